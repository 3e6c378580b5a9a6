"""Metric history in the REST API: what the charts load before the status stream extends them."""

from __future__ import annotations

from rest_framework import serializers

from . import metrics


class MetricsQuerySerializer(serializers.Serializer):
    since = serializers.FloatField(
        required=False, min_value=0, help_text="Only samples taken after this unix time."
    )


class SampleSerializer(serializers.Serializer):
    t = serializers.FloatField(help_text="When the sample was taken (unix time, seconds).")
    cpu_percent = serializers.FloatField(required=False)
    memory_used_bytes = serializers.IntegerField(required=False)
    memory_total_bytes = serializers.IntegerField(required=False)
    disk_read_bps = serializers.FloatField(required=False)
    disk_write_bps = serializers.FloatField(required=False)
    net_rx_bps = serializers.FloatField(required=False)
    net_tx_bps = serializers.FloatField(required=False)
    instances = serializers.IntegerField(required=False, help_text="Hosts: running instances.")


class MetricsSerializer(serializers.Serializer):
    interval = serializers.FloatField(help_text="Seconds between samples.")
    samples = SampleSerializer(many=True, help_text="Oldest first, at most the last hour.")


def metrics_response_data(kind: str, object_id: int, query_params) -> dict:
    """{"interval", "samples"} for one object; a bad `since` is a 400 (ValidationError)."""
    from django.conf import settings

    query = MetricsQuerySerializer(data=query_params)
    query.is_valid(raise_exception=True)
    samples = metrics.recent(kind, object_id, since=query.validated_data.get("since"))
    return {"interval": settings.WATCHER_STATS_INTERVAL, "samples": samples}
