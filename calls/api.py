"""The REST API under /api/: thin read-only views over calls/selectors.py.

Every endpoint needs an authenticated user (settings.REST_FRAMEWORK); raw bodies and
payloads need staff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from calls import selectors
from calls.exports import csv_response
from calls.filters import CallEventFilter, CallFilter
from calls.models import Call, CallEvent
from calls.pagination import KeysetPagination
from calls.serializers import (
    CallDetailSerializer,
    CallEventRawSerializer,
    CallEventSerializer,
    CallListSerializer,
    StatsQuerySerializer,
    StatsSerializer,
    TranscriptSerializer,
)
from calls.views import AlwaysJSON

DEFAULT_STATS_DAYS = 30
MAX_STATS_DAYS = 366


def filtered(selector: Callable[..., QuerySet[Any]], params: Mapping[str, Any]) -> QuerySet[Any]:
    try:
        return selector(filters=params)
    except selectors.InvalidFilters as exc:
        raise exceptions.ValidationError(exc.errors) from None


class SchemaOnlyFilterBackend(DjangoFilterBackend):
    """Puts the view's ``filterset_class`` into the OpenAPI schema. The filtering itself is
    done by the selector, so the API, the CSV export and the benchmarks share one path."""

    def filter_queryset(self, request: Any, queryset: Any, view: Any) -> Any:
        return queryset


class CallViewSet(viewsets.ReadOnlyModelViewSet[Call]):
    lookup_field = "call_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [SchemaOnlyFilterBackend]
    filterset_class = CallFilter
    pagination_class = KeysetPagination
    cursor_orderings = {
        "started_at": "started_at",
        "duration": "duration_ms",
        "cost": "combined_cost",
    }
    default_ordering = "-started_at"
    serializer_class = CallListSerializer

    def get_queryset(self) -> QuerySet[Call]:
        if getattr(self, "swagger_fake_view", False):
            return Call.objects.none()
        return filtered(selectors.call_list, self.request.query_params)

    def get_serializer_class(self) -> Any:
        return CallDetailSerializer if self.action == "retrieve" else CallListSerializer

    def get_object(self) -> Call:
        try:
            return selectors.call_get(call_id=self.kwargs["call_id"])
        except Call.DoesNotExist:
            raise exceptions.NotFound("No call with this call_id.") from None

    @extend_schema(responses=TranscriptSerializer)
    @action(detail=True)
    def transcript(self, request: Request, call_id: str) -> Response:
        try:
            call = selectors.call_transcript_get(call_id=call_id)
        except Call.DoesNotExist:
            raise exceptions.NotFound("No call with this call_id.") from None
        return Response(TranscriptSerializer(call).data)

    @extend_schema(
        operation_id="calls_export_csv",
        filters=True,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, "Streamed CSV.")},
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        """Every call matching the filters as CSV, newest first, streamed."""
        calls = filtered(selectors.call_list, request.query_params)
        return csv_response(
            request=request._request,
            filename="calls.csv",
            header=selectors.CSV_COLUMNS,
            rows=selectors.call_export_rows(calls=calls),
        )


class CallEventViewSet(viewsets.ReadOnlyModelViewSet[CallEvent]):
    filter_backends = [SchemaOnlyFilterBackend]
    filterset_class = CallEventFilter
    pagination_class = KeysetPagination
    cursor_orderings = {"received_at": "first_received_at"}
    default_ordering = "-received_at"
    serializer_class = CallEventSerializer

    def get_queryset(self) -> QuerySet[CallEvent]:
        if getattr(self, "swagger_fake_view", False):
            return CallEvent.objects.none()
        return filtered(selectors.call_event_list, self.request.query_params)

    def get_object(self) -> CallEvent:
        try:
            return selectors.call_event_get(event_id=int(self.kwargs["pk"]))
        except (CallEvent.DoesNotExist, ValueError, OverflowError):
            raise exceptions.NotFound("No event with this id.") from None

    @extend_schema(responses=CallEventRawSerializer)
    @action(detail=True, permission_classes=[IsAdminUser])
    def raw(self, request: Request, pk: str) -> Response:
        """The event as stored: its raw body (the bytes received, unless a retention scrub
        has rewritten it) and the payload parsed from it. Staff only."""
        return Response(CallEventRawSerializer(self.get_object()).data)


class StatsView(APIView):
    @extend_schema(parameters=[StatsQuerySerializer], responses=StatsSerializer)
    def get(self, request: Request) -> Response:
        """Totals, rates, duration percentiles, cost and a per-day series for calls started
        in a time range (default: the last 30 days), optionally for one agent."""
        query = StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        before = query.validated_data.get("started_before") or timezone.now()
        after = query.validated_data.get("started_after") or before - timedelta(
            days=DEFAULT_STATS_DAYS
        )
        if not after < before or before - after > timedelta(days=MAX_STATS_DAYS):
            raise exceptions.ValidationError(
                {
                    "started_after": [
                        f"Must be before started_before, at most {MAX_STATS_DAYS} days."
                    ]
                }
            )
        stats = selectors.call_stats(
            started_after=after,
            started_before=before,
            agent_id=query.validated_data.get("agent", ""),
        )
        return Response(StatsSerializer(stats).data)


class JsonErrorsMixin:
    """Errors as JSON even from views that render YAML or HTML (the schema, Swagger UI), so
    every /api/ client reads a 401 the same way."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        if getattr(response, "exception", False):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response


class SchemaView(JsonErrorsMixin, SpectacularAPIView):
    pass


class DocsView(JsonErrorsMixin, SpectacularSwaggerView):
    pass


def api_endpoints_only(endpoints: list[Any], **kwargs: Any) -> list[Any]:
    """drf-spectacular preprocessing hook: the schema documents /api/ only. The webhook is
    Retell's, described in retell-protocol.md, and not for API clients."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/")]


router = SimpleRouter()
router.register("calls", CallViewSet, basename="call")
router.register("events", CallEventViewSet, basename="event")

urlpatterns = [
    # Before the router, whose call detail route would otherwise claim "export.csv".
    path(
        "calls/export.csv",
        CallViewSet.as_view({"get": "export"}, content_negotiation_class=AlwaysJSON),
        name="call-export",
    ),
    path("stats/", StatsView.as_view(), name="stats"),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]
