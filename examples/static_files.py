"""Static files and file responses.

``router.add_static(prefix, directory)`` serves the files below a directory
(GET and HEAD, with ETag, Last-Modified, 304 Not Modified and Range
requests; no directory listing, and no path can escape the directory).
``FileResponse(path)`` sends one file from a view, with the same headers.

    python examples/static_files.py [--host H] [--port P]

    curl -i localhost:8080/static/index.html
    curl -i localhost:8080/static/style.css -H 'Range: bytes=0-9'
    curl -i localhost:8080/download                     # Content-Disposition: attachment
    curl -i --path-as-is localhost:8080/static/../static_files.py    # 404
"""
import argparse
import os

from fulmen import Application, FileResponse

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = os.path.join(HERE, "static")

app = Application()


def index(request):
    return FileResponse(os.path.join(STATIC, "index.html"))


def download(request):
    # Any file, with extra headers and an explicit media type.
    return FileResponse(os.path.join(STATIC, "style.css"), mime_type="text/plain",
                        headers={"Content-Disposition": 'attachment; filename="style.css"'})


app.router.add_route("/", index)
app.router.add_route("/download", download)
app.router.add_static("/static", STATIC)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
