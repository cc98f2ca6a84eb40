"""A small JSON API: a list of notes per shard, path parameters, status codes, errors.

    framework serve examples/json_api.py:app
    curl -X POST -d '{"text": "buy milk"}' http://198.18.0.2:8080/notes
    curl http://198.18.0.2:8080/notes/1
"""
import itertools

from framework import App, HTTPError, RequestHandler

app = App()


class Notes:
    """The per-shard state: every shard keeps its own notes (no locks: one thread per shard)."""

    def __init__(self):
        self.items = {}
        self.ids = itertools.count(1)


@app.shard_state
def notes(ctx):
    return Notes()


@app.route("/notes")
class NoteList(RequestHandler):
    def get(self):
        self.write({"notes": [{"id": k, **v} for k, v in sorted(self.state.items.items())]})

    def post(self):
        data = self.get_json()
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise HTTPError(400, "need {\"text\": str}")
        note_id = next(self.state.ids)
        self.state.items[note_id] = {"text": data["text"]}
        self.set_status(201)
        self.set_header("Location", f"/notes/{note_id}")
        self.write({"id": note_id, "text": data["text"]})


@app.route("/notes/{note_id:[0-9]+}")
class Note(RequestHandler):
    def note(self, note_id):
        item = self.state.items.get(int(note_id))
        if item is None:
            raise HTTPError(404)
        return item

    def get(self, note_id):
        self.write({"id": int(note_id), **self.note(note_id)})

    def delete(self, note_id):
        self.note(note_id)
        del self.state.items[int(note_id)]
        self.set_status(204)
