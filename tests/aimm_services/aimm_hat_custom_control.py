"""A custom Hat-aware control written as for AIMM: `get_subscriptions(conf)` and
`create(conf, engine, event_client)`. A ("test", "ping", ...) event {request_id, model_type}
creates an instance through the engine's AIMM interface and answers on ("test", "pong") with
the new id and the ids the engine's state then holds."""
import asyncio

import hat.event.common


def get_subscriptions(conf):
    return [("test", "ping", "*")]


async def create(conf, engine, event_client):
    return PingControl(engine, event_client)


class PingControl:
    def __init__(self, engine, client):
        self._engine, self._client = engine, client
        self._tasks = set()

    async def process_events(self, events):
        for event in events:
            task = asyncio.ensure_future(self._ping(event.payload.data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ping(self, data):
        model = await self._engine.create_instance(data["model_type"]).wait_result()
        await self._client.register([hat.event.common.RegisterEvent(
            type=("test", "pong"), source_timestamp=None,
            payload=hat.event.common.EventPayloadJson({
                "request_id": data["request_id"], "instance_id": model.instance_id,
                "models": sorted(self._engine.state["models"])}))])

    async def async_close(self):
        for task in list(self._tasks):
            task.cancel()
