"""A FastAPI app: path and query parameters, a body model, a 422 from validation,
dependencies (a header check, a yield dependency), and the generated OpenAPI document."""
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

app = FastAPI(title="ecosystem test")

opened = []                 # what the yield dependency saw (per worker)
done = []                   # what background tasks finished (per worker)


class Teapot(Exception):
    pass


@app.exception_handler(Teapot)
async def teapot_handler(request: Request, exc: Teapot):
    return JSONResponse({"short": "and stout", "path": request.url.path}, status_code=418)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


def token(x_token: Annotated[str, Header()]):
    if x_token != "secret":
        raise HTTPException(status_code=403, detail="bad token")
    return x_token


def session():
    s = {"id": len(opened) + 1}
    opened.append(s)
    try:
        yield s
    finally:
        s["closed"] = True


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None,
                    limit: Annotated[int, Query(le=100)] = 10):
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items", status_code=201)
async def create_item(item: Item, tok: Annotated[str, Depends(token)]):
    return {"item": item.model_dump(), "total": round(item.price * 1.2, 2), "by": tok}


@app.put("/items/{item_id}")
def replace_item(item_id: int, item: Item, s: Annotated[dict, Depends(session)]):
    # a plain def: FastAPI runs it in its thread pool
    return {"item_id": item_id, "item": item.model_dump(), "session": s["id"] > 0}


@app.get("/users/{user}/hello", response_class=PlainTextResponse)
async def hello(user: str):
    return f"hello {user}"


@app.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int):
    return None


class Public(BaseModel):
    name: str


@app.get("/users/{user}", response_model=Public)
async def user(user: str):
    return {"name": user, "password": "never shown"}       # response_model filters it


@app.get("/search")
async def search(tag: Annotated[list[str], Query()] = []):
    return {"tags": tag}


@app.get("/stream")
async def stream():
    async def lines():
        for i in range(3):
            yield f"line {i}\n"
    return StreamingResponse(lines(), media_type="text/plain")


@app.post("/later/{tag}", status_code=202)
async def later(tag: str, tasks: BackgroundTasks):
    tasks.add_task(done.append, tag)
    return {"queued": tag}


@app.get("/later")
async def later_done():
    return {"done": done}


@app.get("/teapot")
async def teapot():
    raise Teapot()
