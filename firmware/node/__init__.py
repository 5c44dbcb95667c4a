"""floorwatch node application package (runs on the ESP32 under MicroPython)."""
VERSION = "0.1.0"
