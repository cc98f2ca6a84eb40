"""A FastAPI app served by `framework serve` (ASGI 3):

    framework serve examples.fastapi_app:app
    curl http://198.18.0.2:8080/items/3?q=red
    curl -X POST http://198.18.0.2:8080/items -H 'X-Token: secret' \\
         -H 'Content-Type: application/json' -d '{"name": "lamp", "price": 12.5}'
    curl -X POST http://198.18.0.2:8080/items -H 'X-Token: secret' \\
         -H 'Content-Type: application/json' -d '{"name": "lamp"}'      # 422: no price
    curl http://198.18.0.2:8080/docs                                     # the OpenAPI UI
"""
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

app = FastAPI(title="items")


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def require_token(x_token: Annotated[str, Header()]):
    if x_token != "secret":
        raise HTTPException(status_code=403, detail="bad X-Token")
    return x_token


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@app.post("/items", status_code=201, dependencies=[Depends(require_token)])
async def create_item(item: Item):
    return {"item": item, "price_with_tax": round(item.price * 1.2, 2)}
