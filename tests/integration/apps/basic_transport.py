"""The basic app with direct I/O off: every read and write goes through the
uvloop transport (FULMEN_DIRECT_IO=0)."""
import os
import runpy

os.environ["FULMEN_DIRECT_IO"] = "0"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "basic.py"),
               run_name="__main__")
