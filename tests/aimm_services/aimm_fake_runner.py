"""A PluginRunner that runs plugin calls in threads of the test process.

`kill` abandons the call's thread and makes `run` raise at once, which is what the engine
sees when a real plugin worker is killed.
"""
import threading

from aimm_services import plugin_execution


class CallKilled(Exception):
    pass


class ThreadRunner:
    def __init__(self, registry):
        self._registry = registry
        self._killed = {}
        self._lock = threading.Lock()
        self.started = []          # call ids, in the order they started
        self.max_concurrent = 0
        self._running = 0

    def registered(self):
        return self._registry.keys()

    def run(self, call_id, call, on_progress):
        with self._lock:
            killed = self._killed.setdefault(call_id, threading.Event())
            self.started.append((call_id, call.kind, call.key))
            self._running += 1
            self.max_concurrent = max(self.max_concurrent, self._running)
        outcome = {}
        done = threading.Event()

        def target():
            try:
                outcome["reply"] = plugin_execution.execute(
                    call.kind, call.key, call.instance, list(call.args), dict(call.kwargs or {}),
                    on_progress, self._registry)
            except BaseException as exc:  # noqa: BLE001
                outcome["error"] = exc
            done.set()

        threading.Thread(target=target, daemon=True).start()
        try:
            while not done.wait(0.01):
                if killed.is_set():
                    raise CallKilled(f"call {call_id} killed")
        finally:
            with self._lock:
                self._running -= 1
        if "error" in outcome:
            raise outcome["error"]
        return outcome["reply"]

    def kill(self, call_id):
        with self._lock:
            self._killed.setdefault(call_id, threading.Event()).set()
