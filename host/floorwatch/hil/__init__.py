"""Hardware-in-the-loop testing: the pytest plugin (plugin.py) that tests/hil/ runs on real or virtual boards."""
