"""A Flask app served by `framework serve` (WSGI, run in a thread pool per worker, so a
blocking view never stops the worker's loop; `--threads N` sizes it):

    framework serve examples.flask_app:app
    curl http://198.18.0.2:8080/
    curl -X POST http://198.18.0.2:8080/notes -H 'Content-Type: application/json' \\
         -d '{"text": "milk"}'
    curl http://198.18.0.2:8080/notes
"""
import threading
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
notes = []                      # per worker: each worker process has its own
notes_lock = threading.Lock()   # views run on several threads


@app.get("/")
def index():
    return "Hello, World!\n"


@app.get("/notes")
def list_notes():
    with notes_lock:
        return jsonify(notes)


@app.post("/notes")
def add_note():
    text = request.get_json(force=True).get("text", "")
    with notes_lock:
        notes.append(text)
        return jsonify({"id": len(notes), "text": text}), 201


@app.get("/slow")
def slow():
    time.sleep(0.5)             # blocks this thread only
    return "done\n"
