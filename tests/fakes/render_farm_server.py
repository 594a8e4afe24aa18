"""A fake long-running generation upstream (the shape every video vendor shares): submit a task, poll
it, fetch its result, delete it. Used to test the job worker's rules against real HTTP.

- ``POST /tasks`` (JSON) → ``{"id"}``; counted in `submissions`. A scripted `Reply(status=503)` refuses it.
- ``GET /tasks/{id}`` → ``{"id", "status": "running"|"succeeded"|"failed"|"cancelled", "progress",
  "error"}``. Each poll advances a running task by one step of `steps`; a `hold()` keeps every task at
  its current step until `release()`. `fail_next(reason)` makes the next task fail at its last step.
- ``GET /tasks/{id}/result`` → the result bytes; ``DELETE /tasks/{id}`` → cancels it (204).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeServer, Reply


@dataclass
class Task:
    id: str
    body: Any
    step: int = 0
    status: str = "running"
    error: str | None = None
    fail_with: str | None = None


class FakeRenderFarm(FakeServer):
    name = "render-farm"

    def __init__(self, steps: int = 3) -> None:
        super().__init__(Reply())
        self.steps = steps
        self.tasks: dict[str, Task] = {}
        self.submissions = 0
        self._gate = threading.Event()
        self._gate.set()
        self._fail_next: str | None = None

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def fail_next(self, reason: str) -> None:
        self._fail_next = reason

    def routes(self) -> list[Route]:
        return [
            Route("/tasks", self.submit, methods=["POST"]),
            Route("/tasks/{task_id}", self.poll, methods=["GET"]),
            Route("/tasks/{task_id}", self.delete, methods=["DELETE"]),
            Route("/tasks/{task_id}/result", self.result, methods=["GET"]),
        ]

    async def submit(self, request: Request) -> Response:
        rec = await self.record(request)
        reply = self.next_reply()
        if reply.status >= 400:
            return JSONResponse({"error": {"message": "the farm is busy"}}, status_code=reply.status)
        self.submissions += 1
        task = Task(id=f"task-{uuid.uuid4().hex[:12]}", body=rec.json(), fail_with=self._fail_next)
        self._fail_next = None
        self.tasks[task.id] = task
        return JSONResponse({"id": task.id}, status_code=201)

    async def poll(self, request: Request) -> Response:
        await self.record(request)
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"error": {"message": "no such task"}}, status_code=404)
        if task.status == "running" and self._gate.is_set():
            task.step += 1
            if task.step >= self.steps:
                task.status = "failed" if task.fail_with else "succeeded"
                task.error = task.fail_with
        progress = round(100 * min(task.step, self.steps) / self.steps)
        return JSONResponse({"id": task.id, "status": task.status, "progress": progress, "error": task.error})

    async def delete(self, request: Request) -> Response:
        await self.record(request)
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"error": {"message": "no such task"}}, status_code=404)
        task.status = "cancelled"
        return Response(status_code=204)

    async def result(self, request: Request) -> Response:
        await self.record(request)
        task = self.tasks.get(request.path_params["task_id"])
        if task is None or task.status != "succeeded":
            return JSONResponse({"error": {"message": "not ready"}}, status_code=409)
        return Response(f"result of {task.id}".encode(), media_type="application/octet-stream")
