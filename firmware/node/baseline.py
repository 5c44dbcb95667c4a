"""Baselines: the mean of the first `samples` readings of each metric.

Relative limits (node.alarms) and the temperature rise are measured against what is normal for
this machine, learned after installation or a "rebaseline" command. Each metric keeps
[count, mean] (a running mean, exact enough in float32); once count reaches `samples` the mean
is fixed until restart(). None, NaN and infinite readings are skipped.

to_dict() is {metric: [count, mean]}, JSON-able, for the app to keep on flash;
Baseline(samples, stored) picks up where it left: a metric stored with fewer than `samples`
readings goes on learning, one with as many or more is learned.
"""


class Baseline:
    def __init__(self, samples, stored=None):
        if type(samples) is not int or samples < 1:
            raise ValueError("baseline samples must be an integer >= 1, not %r" % (samples,))
        self.samples = samples
        self.m = {}  # metric -> [count, mean]
        for metric in stored or {}:
            e = stored[metric]
            if (type(e) is not list or len(e) != 2 or type(e[0]) is not int or e[0] < 0
                    or type(e[1]) not in (int, float) or e[1] - e[1] != 0):
                raise ValueError("stored baseline for %s is not [count, mean]: %r" % (metric, e))
            self.m[metric] = [e[0], float(e[1])]

    def add(self, metric, value):
        """Learn from one reading; True when it completed the metric's baseline."""
        if value is None or value - value != 0:  # a failed read, NaN or infinity
            return False
        e = self.m.get(metric)
        if e is None:
            e = self.m[metric] = [0, 0.0]
        elif e[0] >= self.samples:
            return False
        e[0] += 1
        e[1] += (value - e[1]) / e[0]
        return e[0] == self.samples

    def value(self, metric):
        """The learned mean, or None while the metric is (or has never been) learning."""
        e = self.m.get(metric)
        return e[1] if e is not None and e[0] >= self.samples else None

    def restart(self, metrics=None):
        """Learn again: every metric seen so far, or those of `metrics` among them."""
        if type(metrics) is str:
            metrics = (metrics,)
        for metric in self.m:
            if metrics is None or metric in metrics:
                e = self.m[metric]
                e[0] = 0
                e[1] = 0.0

    def learning(self):
        """True while any metric that has had a reading (or was restarted) is still learning."""
        for metric in self.m:
            if self.m[metric][0] < self.samples:
                return True
        return False

    def to_dict(self):
        out = {}
        for metric in self.m:
            e = self.m[metric]
            out[metric] = [e[0], e[1]]
        return out
