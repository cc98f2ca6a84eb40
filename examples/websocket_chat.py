"""A WebSocket chat: every message sent to ``/chat/{room}`` reaches everyone in that
room, on every shard (WebSocketHandler; ``ctx.broadcast`` carries it to the other
shards' members, each shard writes to its own sockets).

    framework serve examples/websocket_chat.py:app --cores 2
    python -m websockets ws://198.18.0.2:8080/chat/lobby     # in two terminals: type
    curl http://198.18.0.2:8080/                              # a page that chats, for a browser

A message is text; ``/nick NAME`` sets the name shown with yours. A client that stops
answering pings for 20 s is dropped; a message over 64 KiB closes its socket (1009).
"""
import framework
from framework import App, RequestHandler, WebSocketClosedError, WebSocketHandler

app = App()


@app.shard_state
def rooms(ctx):
    return {}           # room name -> set of this shard's ChatSocket handlers


def deliver(room, text):
    """Runs on every shard (ctx.broadcast): write ``text`` to this shard's members."""
    members = framework.current_shard().state.get(room, ())
    for member in list(members):
        try:
            member.write_message(text)
        except WebSocketClosedError:
            members.discard(member)     # closing: its on_close will not find it twice
    return len(members)


@app.route("/chat/{room}")
class ChatSocket(WebSocketHandler):
    max_message_size = 64 * 1024

    def open(self, room):
        self.room = room
        self.nick = f"guest-{self.ctx.shard_id}-{id(self) % 10000}"
        self.state.setdefault(room, set()).add(self)
        self.write_message(f"* welcome to {room}, {self.nick} (shard {self.ctx.shard_id})")
        return self.say(f"* {self.nick} joined")

    async def on_message(self, message):
        if not isinstance(message, str):
            return
        if message.startswith("/nick "):
            old, self.nick = self.nick, message[6:].strip()[:32] or self.nick
            await self.say(f"* {old} is now {self.nick}")
        else:
            await self.say(f"{self.nick}: {message}")

    def on_close(self):
        members = self.state.get(self.room)
        if members is not None and self in members:
            members.discard(self)
            if not members:
                del self.state[self.room]
            # on_close may be async: the goodbye goes out after we are gone
            return self.say(f"* {self.nick} left")

    def say(self, text):
        return self.ctx.broadcast(deliver, self.room, text)


PAGE = """<!doctype html><meta charset=utf-8><title>chat</title>
<input id=room value=lobby> <button onclick=join()>join</button><pre id=log></pre>
<input id=msg size=60 onkeydown="if(event.key=='Enter'){ws.send(this.value);this.value=''}">
<script>
let ws;
function join() {
  if (ws) ws.close();
  ws = new WebSocket(`ws://${location.host}/chat/${room.value}`);
  ws.onmessage = e => { log.textContent += e.data + "\\n"; };
  ws.onclose = e => { log.textContent += `* closed (${e.code})\\n`; };
}
join();
</script>"""


@app.route("/")
class Page(RequestHandler):
    def get(self):
        self.write(PAGE)
