# floorwatch node: runs after boot.py. Everything lives in the `node` package.
from node import app

app.run()
