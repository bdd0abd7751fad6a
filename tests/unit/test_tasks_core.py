"""The task bookkeeping (loopback.tasks.TaskManager), pure: a clock the test moves, work run
at once on the calling thread. States, TTL, ownership, the bounds in number and bytes."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import loopback
from loopback.context import ClientState, Context
from loopback.jsonrpc import JsonRpcError
from loopback.tasks import CANCELLED, COMPLETED, FAILED, INPUT_REQUIRED, WORKING, TaskManager


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(clock: Clock, run_now: bool = True, **settings: Any) -> tuple[TaskManager, list[Callable[[], None]]]:
    queued: list[Callable[[], None]] = []
    submit = (lambda work: work()) if run_now else queued.append
    return TaskManager(loopback.Settings(**settings), submit, clock), queued


def new_task(tasks: TaskManager, owner: Any = "alice", modern: bool = True, ttl: Any = None) -> Any:
    return tasks.create(owner, "t", modern, Context(tool_name="t"), ClientState(), ttl)


def test_a_task_goes_from_working_to_completed_and_keeps_its_result() -> None:
    clock = Clock()
    tasks, queued = manager(clock, run_now=False)
    task = new_task(tasks)
    tasks.start(task, lambda: {"content": [{"type": "text", "text": "ok"}]})
    assert task.status == WORKING and task.detailed()["status"] == "working" and "result" not in task.detailed()
    clock.now += 2
    queued.pop()()
    assert task.status == COMPLETED and task.done.done()
    shown = task.detailed()
    assert shown["result"] == {"content": [{"type": "text", "text": "ok"}]}
    assert shown["createdAt"] < shown["lastUpdatedAt"] and shown["ttlMs"] == 3600 * 1000


def test_a_protocol_error_fails_the_task_and_a_cancel_is_final() -> None:
    clock = Clock()
    tasks, _ = manager(clock)
    task = new_task(tasks)

    def broken() -> dict[str, Any]:
        raise JsonRpcError(-32603, "no")

    tasks.start(task, broken)
    assert task.status == FAILED and task.detailed()["error"] == {"code": -32603, "message": "no"}
    assert not tasks.cancel(task)  # terminal: stays failed
    other = new_task(tasks)
    assert tasks.cancel(other) and other.status == CANCELLED and other.context.cancelled
    tasks.start(other, lambda: {"content": []})  # work after a cancel changes nothing
    assert other.status == CANCELLED


def test_only_the_owner_finds_a_task_and_ttl_ends_it() -> None:
    clock = Clock()
    tasks, _ = manager(clock, task_ttl=10.0)
    task = new_task(tasks, "alice")
    assert tasks.find("alice", task.id) is task
    with pytest.raises(JsonRpcError) as theirs:
        tasks.find("bob", task.id)
    with pytest.raises(JsonRpcError) as unknown:
        tasks.find("bob", "nope")
    assert theirs.value.code == unknown.value.code == -32602
    assert tasks.owned("bob") == [] and tasks.owned("alice") == [task]
    clock.now += 9.9
    assert tasks.find("alice", task.id) is task
    clock.now += 0.2
    with pytest.raises(JsonRpcError):
        tasks.find("alice", task.id)
    assert task.context.cancelled  # it was still running: cancelled as it expired
    assert new_task(tasks, ttl=3.0).ttl == 3.0 and new_task(tasks, ttl=99.0).ttl == 10.0


def test_input_required_waits_for_every_answer_then_runs_again() -> None:
    clock = Clock()
    tasks, _ = manager(clock)
    task = new_task(tasks)
    runs: list[dict[str, Any]] = []

    def run() -> dict[str, Any]:
        runs.append(dict(task.context.input_responses))
        if len(task.context.input_responses) < 2:
            return {"resultType": "input_required", "inputRequests": {
                "a": {"method": "elicitation/create", "params": {}},
                "b": {"method": "elicitation/create", "params": {}}}}
        return {"content": [{"type": "text", "text": "both"}]}

    tasks.start(task, run)
    assert task.status == INPUT_REQUIRED and sorted(task.detailed()["inputRequests"]) == ["a", "b"]
    tasks.update(task, {"a": {"action": "accept"}, "zzz": {"ignored": True}})
    assert task.status == INPUT_REQUIRED and list(task.detailed()["inputRequests"]) == ["b"]
    tasks.update(task, {"b": {"action": "decline"}})
    assert task.status == COMPLETED and runs[-1] == {"a": {"action": "accept"}, "b": {"action": "decline"}}
    assert len(runs) == 2


def test_results_are_bounded_in_number_and_bytes() -> None:
    clock = Clock()
    tasks, _ = manager(clock, max_tasks=3, max_task_result_bytes=500)
    done = []
    for _ in range(3):
        task = new_task(tasks)
        tasks.start(task, lambda: {"content": [{"type": "text", "text": "x" * 100}]})
        done.append(task)
    fourth = new_task(tasks)  # past max_tasks: the oldest finished one goes
    assert [t.id for t in tasks.owned("alice")] == [done[1].id, done[2].id, fourth.id]
    tasks.start(fourth, lambda: {"content": [{"type": "text", "text": "y" * 300}]})
    assert fourth.status == COMPLETED
    assert done[1].id not in {t.id for t in tasks.owned("alice")}  # dropped for the bytes
    huge = new_task(tasks)
    tasks.start(huge, lambda: {"content": [{"type": "text", "text": "z" * 1000}]})
    assert huge.result is not None and huge.result["isError"] is True
    running = [new_task(tasks) for _ in range(3 - len(tasks))]
    assert all(t.status == WORKING for t in running)
    # all slots running: refused rather than forgetting unfinished work
    while len([t for t in tasks.owned("alice") if t.status == WORKING]) < 3:
        new_task(tasks)
    with pytest.raises(JsonRpcError, match="Too many tasks"):
        new_task(tasks)


def test_room_is_made_only_from_the_same_grants_finished_tasks() -> None:
    clock = Clock()
    tasks, _ = manager(clock, max_tasks=4, max_tasks_per_grant=3, max_task_result_bytes=500)
    alices = []
    for _ in range(2):
        task = new_task(tasks, owner="alice")
        tasks.start(task, lambda: {"content": [{"type": "text", "text": "a" * 150}]})
        alices.append(task)
    bobs = []
    for _ in range(2):
        task = new_task(tasks, owner="bob")
        tasks.start(task, lambda: {"content": [{"type": "text", "text": "b" * 10}]})
        bobs.append(task)
    third = new_task(tasks, owner="bob")  # all four slots taken: bob's oldest finished task goes
    assert [t.id for t in tasks.owned("alice")] == [a.id for a in alices]
    assert [t.id for t in tasks.owned("bob")] == [bobs[1].id, third.id]
    # bob's big result: the bytes bound is passed, but alice's results stay; bob's own go first
    tasks.start(third, lambda: {"content": [{"type": "text", "text": "c" * 300}]})
    assert [t.id for t in tasks.owned("alice")] == [a.id for a in alices]
    assert [t.id for t in tasks.owned("bob")] == [third.id] and third.status == COMPLETED


def test_one_grant_cannot_take_every_task_slot() -> None:
    clock = Clock()
    tasks, _ = manager(clock, run_now=False, max_tasks=10, max_tasks_per_grant=2)
    new_task(tasks, owner="alice")
    new_task(tasks, owner="alice")
    with pytest.raises(JsonRpcError, match="Too many tasks: this token has 2 unfinished"):
        new_task(tasks, owner="alice")
    assert new_task(tasks, owner="bob").status == WORKING  # another token still gets one
    tasks, _ = manager(clock, run_now=False, max_tasks=3, max_tasks_per_grant=2)
    new_task(tasks, owner="alice")
    new_task(tasks, owner="bob")
    new_task(tasks, owner="carol")
    with pytest.raises(JsonRpcError, match="Too many tasks: 3 are kept"):
        new_task(tasks, owner="alice")  # nothing of alice's finished: nobody else's running task goes


def test_close_cancels_what_runs_and_refuses_new_tasks() -> None:
    clock = Clock()
    tasks, _ = manager(clock, run_now=False)
    task = new_task(tasks)
    tasks.close()
    assert task.status == CANCELLED and task.context.cancelled and task.done.done()
    with pytest.raises(JsonRpcError):
        new_task(tasks)
