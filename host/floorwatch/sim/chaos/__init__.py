"""`floorwatch sim --scenario chaos`: a seeded campaign of faults against a fleet, and its loss report.

The parts, one module each:

- faults.py: the fault classes and `plan()`, a pure function of (seed, boards, duration, classes):
  the list of fault events, in board seconds.
- timelines.py: how the campaign waits for board time (scaled or virtual), and the guard against
  firmware that holds a virtual clock still.
- campaign.py: `Campaign`, which plays a plan against a running Fleet in board time, keeps the
  ground truth of what every boot produced (the node's store: its boot and next seq), then heals
  every fault and lets the nodes drain their queues.
- here: `run()`, which wires a broker, the independent Ledger (floorwatch.ledger), the fleet and
  the campaign together and returns (and writes) the report, and what the CLI shows of it.

The goal the report judges: no record silently lost. Records the node declared dropped (queue
full, lost in a reset) are counted, duplicates are allowed (named by device, boot, seq).
"""

import contextlib
import json

from ...broker import BrokerError, Mosquitto, parse_broker_url
from ...ledger import Ledger
from .campaign import Campaign
from .faults import CLASSES, CUT_CHECKPOINTS, FAULTS, HANG_S, I2C_ERRORS, JUMP_S, START, Event, fault_counts, plan

__all__ = ["CAMPAIGN_INTERVALS", "CLASSES", "CUT_CHECKPOINTS", "FAULTS", "HANG_S", "I2C_ERRORS", "JUMP_S",
           "START", "Campaign", "Event", "fault_counts", "plan", "progress_text", "run", "summary"]

# Reading intervals of a campaign's boards. The campaign is about delivery, not analytics: a vibration
# window costs the host ~20 ms (signal, FIFO, FFT), so windows every 10 minutes let 100 boards live a
# day in minutes; a temperature record every 30 s still gives 2,880 records per board and day.
CAMPAIGN_INTERVALS = {"temp_s": 30, "vib_s": 600, "diag_s": 600}


# --- one campaign, start to finish ---------------------------------------------------------------

def run(boards, duration, seed=0, site="chaos", speed=20.0, broker_url=None, classes=CLASSES,
        report_path=None, intensity=1.0, progress=None, workdir=None, fleet_options=None,
        drain_wall_s=600.0):
    """Run a chaos campaign and return its report (also written to report_path as JSON).

    Without broker_url a private mosquitto with persistence is started (the campaign restarts it).
    With broker_url the broker is not ours to restart: "broker_restart" is left out of the plan and
    the report says so. speed: a number (ScaledClock) or "max" (the virtual clock).
    """
    from ..fleet import Fleet  # late: the fleet pulls in the whole simulator

    classes = [c for c in CLASSES if c in set(classes)]
    notes = []
    with contextlib.ExitStack() as cleanup:
        broker = None
        if broker_url is None:
            broker = cleanup.enter_context(Mosquitto(persistent=True))
            host, port = broker.host, broker.port
        else:
            host, port = parse_broker_url(broker_url)
            if "broker_restart" in classes:
                classes.remove("broker_restart")
                notes.append("broker_restart left out: the broker at %s:%d is not ours to restart" % (host, port))
        ledger = Ledger(host, port, site=site)
        try:
            ledger.start()
        except (OSError, TimeoutError) as exc:
            raise BrokerError("cannot reach the broker at %s:%d (%s)" % (host, port, exc)) from None
        cleanup.callback(ledger.stop)
        fleet_options = dict(fleet_options or {})
        fleet_options.setdefault("intervals", CAMPAIGN_INTERVALS)
        fleet = Fleet(boards, host, port, site=site, seed=seed, speed=speed, workdir=workdir, **fleet_options)
        cleanup.callback(fleet.close)
        events = plan(seed, boards, duration, classes, intensity)
        campaign = Campaign(fleet, ledger, events, duration, broker=broker, speed=speed, progress=progress)
        campaign.run(drain_wall_s=drain_wall_s)
        report = campaign.report()
        report.update(seed=seed, site=site, classes=classes, intensity=intensity,
                      intervals=fleet_options["intervals"])
        report["notes"] = notes + report["notes"]
        if broker is not None:
            # mosquitto drops QoS 1 messages for a client whose queue is full: the ledger's would be a
            # false loss, so say it happened.
            report["broker"] = {"restarts": campaign.applied["broker_restart"],
                                "dropped_warnings": broker.log_text().count("messages are being dropped")}
        if report_path:
            with open(report_path, "w", encoding="utf-8") as f:
                json.dump(report, f, indent=1, sort_keys=False)
                f.write("\n")
        return report


# --- what the CLI shows ----------------------------------------------------------------------------

def progress_text(campaign):
    """One line for the live display while a campaign runs."""
    from ..live import clock_text

    if campaign is None:
        return "chaos: starting the broker, the ledger and the fleet ..."
    done = sum(campaign.applied.values())
    phase = "draining" if campaign.now >= campaign.duration else "playing faults"
    return "chaos: %s — %s of %s simulated — %d faults so far — %d telemetry messages" % (
        phase, clock_text(min(campaign.now, campaign.duration)), clock_text(campaign.duration), done,
        campaign.ledger.messages)


def summary(report, report_path=None, rows=20):
    """Rich renderables summing up a report: the books per device (all of them for small fleets,
    else the ones with a problem), the faults played, the verdict."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ..live import clock_text

    speed = report["clock"]["speed"]
    title = "chaos — %d boards — %s simulated in %s wall (speed %s)" % (
        report["boards"], clock_text(report["duration_s"]), clock_text(report["wall_s"]), speed)
    grid = Table(title=title, box=box.SIMPLE_HEAD,
                 caption="records named by (device, boot, seq); duplicates (dupl.) are allowed")
    grid.add_column("device", no_wrap=True)
    for name in ("produced", "delivered", "dupl.", "dropped\nfull", "dropped\nreset", "silently\nlost",
                 "unexp."):
        grid.add_column(name, justify="right", min_width=max(len(line) for line in name.split("\n")))

    def add(name, row, style=None):
        lost = row["silently_lost"]
        grid.add_row(name, str(row["produced"]), str(row["delivered"]), str(row["duplicates"]),
                     str(row["dropped_counted"].get("full", 0)), str(row["dropped_counted"].get("reset", 0)),
                     "[%s]%d[/]" % ("red" if lost else "green", lost), str(row["unexpected"]), style=style)

    devices = report["devices"]
    shown = sorted(devices) if len(devices) <= rows else \
        [d for d in sorted(devices) if devices[d]["silently_lost"] or devices[d]["unexpected"]][:rows]
    for device in shown:
        add(device, devices[device])
    add("all %d" % len(devices), report["totals"], style="bold")
    out = [grid]
    faults = ", ".join("%s %d" % (name, f["applied"]) + (" (%d skipped)" % f["skipped"] if f["skipped"] else "")
                       for name, f in report["faults"].items())
    out.append("faults played: %s" % (faults or "none"))
    out.extend("note: %s" % escape(note) for note in report["notes"])
    if report["crashes"]:
        out.append("[yellow]%d firmware crashes, e.g. %s: %s[/]" % (
            len(report["crashes"]), report["crashes"][0]["device"], escape(report["crashes"][0]["error"])))
    if report["stalls"]:
        out.append("[red]%d stalls: boards that never waited held the virtual clock still and were reset, "
                   "e.g. %s at %s[/]" % (len(report["stalls"]), report["stalls"][0]["device"],
                                         escape(str(report["stalls"][0]["where"]))))
    drain = report["drain"]
    out.append("drain after healing: %s in %s simulated" % (drain.get("ended"), clock_text(drain.get("board_s", 0))))
    if report["goal_met"]:
        out.append("[green]goal met: no record silently lost[/]")
    else:
        runs = ", ".join("%(device)s boot %(boot)d seq %(seq)d+%(n)d" % r for r in report["silently_lost_examples"][:3])
        out.append("[red]goal not met: %d records silently lost (%s)[/]" % (report["totals"]["silently_lost"], runs))
    if report_path:
        out.append("report written to %s" % escape(str(report_path)))
    return out
