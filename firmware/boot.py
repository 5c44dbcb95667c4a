# floorwatch node: runs first at every start. Collect early and often: a small, fragmented heap
# hurts more than the time collection takes (~2 ms on an ESP32 without SPIRAM).
import gc

gc.collect()
gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
