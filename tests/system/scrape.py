"""Reading a GET /metrics answer in the tests."""

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """The samples of one /metrics answer, by sample name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"{sample} twice in one scrape"
                self.samples[key] = sample.value

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series not made yet (a counter at 0)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def statuses(self) -> dict[str, float]:
        """agent_server_runs by status."""
        return {
            dict(labels)["status"]: value
            for (name, labels), value in self.samples.items()
            if name == "agent_server_runs"
        }
