"""Scenario `static`: add_static serving a directory (ETag, Last-Modified,
conditional and range requests, path checks); wrk asks for one 16 KiB
script.  Usage: static_file.py PORT"""
import sys

import static_asset
from fulmen import Application

app = Application()
app.router.add_static("/static", static_asset.directory())
app.run(host="127.0.0.1", port=int(sys.argv[1]))
