"""A Flask (WSGI) app: routes, JSON in and out, a streamed (generator) body, a large
body, form data, query strings and the WSGI environ fields a view can see."""
import os

from flask import (Flask, Response, jsonify, redirect, request, send_file,
                   stream_with_context)

app = Flask(__name__)

LARGE = bytes(range(256)) * 4096            # 1 MiB
A_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "starlette_app.py")


@app.get("/")
def index():
    return "hello\n"


@app.get("/json")
def as_json():
    return jsonify({"n": 1, "text": "héllo", "list": [1, 2, 3]})


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify({"id": item_id, "query": sorted(request.args.items(multi=True))})


@app.get("/name/<name>")
def name(name):
    return name


@app.route("/echo", methods=["POST", "PUT"])
def echo():
    body = request.get_data()
    return Response(body, content_type=request.content_type or "text/plain",
                    headers={"X-Body-Length": str(len(body))})


@app.post("/form")
def form():
    return jsonify(sorted(request.form.items(multi=True)))


@app.get("/stream")
def stream():
    @stream_with_context
    def parts():
        for i in range(5):
            yield f"part {i}\n"
    return Response(parts(), content_type="text/plain")


@app.get("/large")
def large():
    return Response(LARGE, content_type="application/octet-stream")


@app.get("/environ")
def environ():
    e = request.environ
    return jsonify({k: e[k] for k in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO",
                                      "QUERY_STRING", "SERVER_PROTOCOL", "wsgi.url_scheme")}
                   | {"version": list(e["wsgi.version"]), "input": e["wsgi.input"].read()
                      .decode()})


@app.get("/file")
def a_file():
    # werkzeug answers Range (206/416) and If-None-Match/If-Modified-Since (304) itself
    return send_file(A_FILE, mimetype="text/x-python", conditional=True, etag=True)


@app.get("/old")
def old():
    return redirect("/items/1?from=old", code=301)


@app.get("/fail")
def fail():
    raise RuntimeError("boom (expected by the test)")
