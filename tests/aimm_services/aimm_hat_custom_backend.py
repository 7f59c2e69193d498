"""A custom Hat-aware backend: `get_subscriptions(conf)` and `create(conf, event_client)`.
It keeps models in memory and registers ("test", "store", <what>) events through the
blocking client it is given (it runs in the engine's threads)."""
import hat.event.common

from aimm_services.backends.memory_store import MemoryStore


def get_subscriptions(conf):
    return [("test", "store", "*")]


def create(conf, event_client):
    return NoisyStore(event_client, conf["label"])


class NoisyStore(MemoryStore):
    def __init__(self, client, label):
        super().__init__()
        self._client, self._label = client, label
        self._tell("opened", {"label": label})

    def create(self, model_type, instance):
        model = super().create(model_type, instance)
        self._tell("created", {"label": self._label, "instance_id": model.instance_id})
        return model

    def _tell(self, what, payload):
        assert self._client.register([hat.event.common.RegisterEvent(
            type=("test", "store", what), source_timestamp=None,
            payload=hat.event.common.EventPayloadJson(payload))], with_response=True)
