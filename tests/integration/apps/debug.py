"""Application(debug=True): a failing view's 500 carries the traceback.
Also gc_freeze=False and gc_threshold=None: the collector is left as Python
sets it."""
import gc

from fulmen import Application

# 3.12 starts with a few hundred objects of its own in the permanent generation
FROZEN_AT_IMPORT = gc.get_freeze_count()


def boom(request):
    raise RuntimeError("debug-marker-7f3a")


def ok(request):
    return request.Response(text="ok")


app = Application(debug=True, gc_freeze=False, gc_threshold=None)
app.router.add_route("/gc", lambda request: request.Response(json={
    "setting": app.gc_freeze, "frozen": gc.get_freeze_count() - FROZEN_AT_IMPORT,
    "threshold": gc.get_threshold()[0]}))
app.router.add_route("/boom", boom)
app.router.add_route("/ok", ok)
# a header value with a LF: answered 500, and the debug log says 500
app.router.add_route("/bad-header", lambda request: request.Response(
    text="x", headers={"X-Bad": "a\nb"}))

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=0)
