"""A small JSON CRUD service: todos kept in memory.

    python examples/todo_api.py [--host H] [--port P]

    curl localhost:8080/todos
    curl -X POST localhost:8080/todos -d '{"title": "write docs"}'     # 201
    curl localhost:8080/todos/1
    curl -X PUT localhost:8080/todos/1 -d '{"title": "write docs", "done": true}'
    curl -X PATCH localhost:8080/todos/1 -d '{"done": false}'
    curl -X DELETE localhost:8080/todos/1                                # 204
    curl localhost:8080/todos/99                                         # 404
    curl -X POST localhost:8080/todos -d '{oops'                         # 400
"""
import argparse
import itertools

from fulmen import Application, BadRequest, RouteNotFoundException

app = Application()
r = app.router

todos: dict[int, dict] = {}     # id -> {"id", "title", "done"}
next_id = itertools.count(1)


class NotFound(Exception):
    pass


class Invalid(Exception):
    pass


def get_todo(request):
    todo_id = request.match_dict["id"]          # already an int: {id:int}
    try:
        return todos[todo_id]
    except KeyError:
        raise NotFound("no todo with id %d" % todo_id) from None


def read_object(request, *, partial):
    """The JSON body as a dict with a valid title/done; raises Invalid."""
    try:
        data = request.json                     # BadRequest when not JSON
    except BadRequest:
        raise Invalid("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object")
    unknown = set(data) - {"title", "done"}
    if unknown:
        raise Invalid("unknown field(s): %s" % ", ".join(sorted(unknown)))
    if "title" in data:
        if not isinstance(data["title"], str) or not data["title"].strip():
            raise Invalid("title must be a non-empty string")
    elif not partial:
        raise Invalid("title is required")
    if "done" in data and not isinstance(data["done"], bool):
        raise Invalid("done must be true or false")
    return data


def list_todos(request):
    items = list(todos.values())
    done = request.query.get("done")
    if done is not None:
        items = [t for t in items if t["done"] == (done == "true")]
    return request.Response(json=items)


def create_todo(request):
    data = read_object(request, partial=False)
    todo = {"id": next(next_id), "title": data["title"], "done": data.get("done", False)}
    todos[todo["id"]] = todo
    return request.Response(code=201, json=todo,
                            headers={"Location": r.url_for("todo", id=todo["id"])})


def show_todo(request):
    return request.Response(json=get_todo(request))


def replace_todo(request):
    todo = get_todo(request)
    data = read_object(request, partial=False)
    todo.update(title=data["title"], done=data.get("done", False))
    return request.Response(json=todo)


def update_todo(request):
    todo = get_todo(request)
    todo.update(read_object(request, partial=True))
    return request.Response(json=todo)


def delete_todo(request):
    todo = get_todo(request)
    del todos[todo["id"]]
    return request.Response(code=204)


def not_found(request, exc):
    message = str(exc) if isinstance(exc, NotFound) else "no such resource"
    return request.Response(code=404, json={"error": message})


def invalid(request, exc):
    return request.Response(code=400, json={"error": str(exc)})


r.add_route("/todos", list_todos, method="GET", name="todos")
r.add_route("/todos", create_todo, method="POST")
r.add_route("/todos/{id:int}", show_todo, method="GET", name="todo")
r.add_route("/todos/{id:int}", replace_todo, method="PUT")
r.add_route("/todos/{id:int}", update_todo, method="PATCH")
r.add_route("/todos/{id:int}", delete_todo, method="DELETE")

app.add_error_handler(NotFound, not_found)
app.add_error_handler(RouteNotFoundException, not_found)
app.add_error_handler(Invalid, invalid)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args()
    app.run(host=args.host, port=args.port)
