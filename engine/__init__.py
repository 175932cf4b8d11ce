"""Herald's engine: the public API plugins and adapters use (and the only one plugins may import)."""

from typing import TYPE_CHECKING

from engine.contracts import (
    ActiveOptimizer,
    Channel,
    ColumnarChannel,
    ColumnarOptimizer,
    ContactField,
    DecisionDraft,
    EvaluationContext,
    Evaluator,
    EvaluatorSpec,
    FieldSpec,
    FiredRule,
    IncentiveContext,
    IncentiveType,
    Optimizer,
    RuleKind,
    SendContext,
    SendRequest,
    SendResult,
    Transport,
    ValidatingOptimizer,
    is_active,
)
from engine.delivery import transport_send
from engine.errors import (
    AudienceError,
    EngineError,
    EvaluationError,
    MessageFileError,
    ModeError,
    PluginConflict,
    Problem,
    RuleFileError,
    TemplateError,
    UnknownReference,
    ValidationFailed,
)
from engine.events import EngineEvent
from engine.facts import zone
from engine.fields import coerce as coerce_value
from engine.handles import (
    EMAIL_ADDRESS,
    email_address,
    email_addresses,
    email_handle_type,
    phone_line_type,
    phone_number,
    phone_numbers,
    whatsapp_number,
    whatsapp_numbers,
)
from engine.hookspecs import hookimpl
from engine.lazy import lazy
from engine.model import (
    Campaign,
    Creative,
    Customer,
    Decision,
    DeliverySettings,
    IncentiveSpec,
    Issue,
    Message,
    Reachability,
    Schedule,
    TraceStep,
)
from engine.phones import PHONE_TYPE_NAMES, SMS_TYPE_NAMES
from engine.reachability import (
    ContactReach,
    ContactReachability,
    check_each,
    e164_number,
    fact_column,
    no_match,
    nonempty,
    ordered_reachability,
    ordered_reachability_expr,
    unreachable_reason,
    valid_emails,
)
from engine.scheduling import defer_for_quiet_hours, local_send_time, parse_hhmm
from engine.stores import InMemoryLedgerStore, LedgerEntry, LedgerFull, LedgerInfo, LedgerStore
from engine.templating import check_tags, missing_values, render_content, template_strings
from engine.templating import variables as template_variables
from engine.validation import unknown_keys

__all__ = [
    "ContactReachability",
    "Campaign", "ContactField", "Channel", "ContactReach", "Creative", "Customer", "Decision", "DecisionDraft",
    "DeliverySettings", "EngineError", "EngineEvent", "EvaluationContext", "EvaluationError", "Evaluator",
    "FieldSpec", "FiredRule", "IncentiveSpec", "IncentiveType", "Issue", "Message", "MessageFileError",
    "ModeError", "Optimizer", "PluginConflict", "Problem", "Reachability", "RuleFileError", "Schedule", "TemplateError",
    "TraceStep", "AudienceError", "UnknownReference", "ValidationFailed", "check_each", "check_tags", "defer_for_quiet_hours", "e164_number", "fact_column", "hookimpl", "local_send_time", "ordered_reachability", "ordered_reachability_expr", "parse_hhmm", "no_match", "nonempty", "zone", "unreachable_reason",
    "coerce_value", "missing_values", "render_content", "template_strings", "template_variables", "unknown_keys",
    "EvaluatorSpec", "IncentiveContext", "InMemoryLedgerStore", "LedgerEntry", "LedgerFull", "LedgerInfo",
    "LedgerStore", "SendContext", "SendRequest", "SendResult", "Transport", "transport_send",
    "ActiveOptimizer", "ColumnarChannel", "ColumnarContext", "ColumnarOptimizer", "RuleKind", "ValidatingOptimizer",
    "is_active",
    "PHONE_TYPE_NAMES", "SMS_TYPE_NAMES", "lazy", "valid_emails",
    "EMAIL_ADDRESS", "email_address", "email_addresses", "email_handle_type", "phone_line_type", "phone_number", "phone_numbers", "whatsapp_number",
    "whatsapp_numbers",
]


if TYPE_CHECKING:
    from engine.columnar.context import ColumnarContext


def __getattr__(name: str) -> object:
    """``ColumnarContext`` is imported on first use (it needs polars)."""
    if name == "ColumnarContext":
        from engine.columnar.context import ColumnarContext

        return ColumnarContext
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
