"""The `context` of each event kind, as TypedDicts (plain dicts at run time).

Names and keys are those of 0.12, so `build_event(ApiEventKind.trialStarted,
TrialStartedContext(session_id=..., trial_id=..., reason=...))` reads the same in an
application written for it. Keys are snake_case here and camelCase on the wire.
Kinds whose context is a status dataclass (systemStatus, detectorChanged,
alarmChanged, animal*) use the dataclasses of `system_status`.
"""

from enum import Enum
from typing import Any, List, Optional, Protocol, Sequence, TypedDict, Union
from uuid import UUID

try:
    from typing import NotRequired
except ImportError:  # Python 3.10
    from typing_extensions import NotRequired

from .alarms import ApiAlarmKind, ApiEmergencyResumeReason, ApiEmergencyStopReason
from .application_modes import ApiApplicationMode, ApiTrainingMode
from .event_kinds import ApiPelletShiftSource

__all__ = [
    "Vector3Context", "SessionTrialContext", "AnalysisTrialContext", "TrialSeenContext", "ReasonContext",
    "CommandContext", "IsEnabledContext", "IsEngagedContext", "IntensityContext", "CountChangeContext",
    "TrainingPhaseContext", "EmergencyStopContext", "EmergencyResumeContext", "VersionContext",
    "ApplicationModeContext", "PropertyChangedContext", "ProjectChangedContext", "ProjectTrialChangedContext",
    "PelletHomeResetContext", "PelletDriftResetContext", "SessionStartedContext", "SessionEndedContext",
    "TrialStartedContext", "TrialEndedContext", "CaptureAnalysisResultLike", "BatchAnalysisStartedContext",
    "BatchAnalysisEndedContext", "BaselineContext", "FrequencyContext", "DelayContext", "ReleaseToneContext",
    "IntertrialSaveContext", "IntertrialErrorContext", "DayStartedContext", "ReachEventMethodLike",
    "ReachEventOutcomeLike", "ReachEventLike", "ReachEventDict", "TrialReachEventsContext",
    "IntertrialResponseDataLike", "IntertrialResponseDict", "IntertrialResponseContext", "PelletShiftContext",
    "TrainingModeContext", "TrainingPlanContext",
]


# -- shared shapes ------------------------------------------------------------------------------

class Vector3Context(TypedDict):
    x: float
    y: float
    z: float


class SessionTrialContext(TypedDict):
    session_id: str
    trial_id: int


class AnalysisTrialContext(SessionTrialContext):
    batch_id: Optional[str]  # None outside batch analysis; always present


class TrialSeenContext(SessionTrialContext):
    batch_id: Optional[str]  # deprecated in 0.12: set None, never read


class ReasonContext(TypedDict):
    reason: str


class CommandContext(TypedDict):
    context: str  # the uuid the device command returned and acknowledged


class IsEnabledContext(TypedDict):
    is_enabled: bool


class IsEngagedContext(TypedDict):
    is_engaged: bool


class IntensityContext(TypedDict):
    intensity: float


class CountChangeContext(TypedDict):
    change: int
    count: int


class TrainingPhaseContext(TypedDict):
    training_phase_id: UUID


# -- core / system ------------------------------------------------------------------------------

class EmergencyStopContext(TypedDict):
    reason: str
    reason_code: ApiEmergencyStopReason
    active_alarms: List[ApiAlarmKind]  # active and enabled alarms; may be empty


class EmergencyResumeContext(ReasonContext):
    reason_code: ApiEmergencyResumeReason
    resumed_alarms: List[ApiAlarmKind]  # alarms that cleared themselves; usually []


class VersionContext(TypedDict):
    version: str


class ApplicationModeContext(TypedDict):
    mode: ApiApplicationMode


class PropertyChangedContext(TypedDict):
    target: int
    name: str
    new_value: Any
    old_value: Any


class ProjectChangedContext(TypedDict):
    root: str
    device_id: str
    day: str
    session_id: str
    trial_id: int


class ProjectTrialChangedContext(TypedDict):
    root: str
    session_id: str
    trial_id: int


# -- behaviour ----------------------------------------------------------------------------------

class PelletHomeResetContext(TypedDict):
    cycles: int


class PelletDriftResetContext(TypedDict):
    drift: Vector3Context


class SessionStartedContext(TypedDict):
    session_id: str
    is_analysis_deferred: bool


class SessionEndedContext(TypedDict):
    session_id: str
    capture_trial_count: int
    analysis_trial_count: int
    failed_trial_count: int


class TrialStartedContext(TypedDict):
    session_id: str
    trial_id: int
    reason: str


class CaptureAnalysisResultLike(str, Enum):
    """A trial's capture/analysis outcome; a str enum, so it is its string on the wire."""

    CAPTURE_ONLY = "capture_only"
    ANALYSIS_SUCCEEDED = "analysis_succeeded"
    ANALYSIS_FAILED = "analysis_failed"
    ANALYSIS_DELAYED = "analysis_delayed"


class TrialEndedContext(TypedDict):
    session_id: str
    trial_id: int
    result: CaptureAnalysisResultLike


class BatchAnalysisStartedContext(TypedDict):
    session_id: str
    batch_id: str
    analysis_trial_count: int


class BatchAnalysisEndedContext(TypedDict):
    session_id: str
    batch_id: str
    analysis_trial_count: int
    failed_trial_count: int


class BaselineContext(TypedDict):
    baseline: float


class FrequencyContext(TypedDict):
    frequency: float


class DelayContext(TypedDict):
    delay: float


class ReleaseToneContext(TypedDict):
    frequency: float
    duration: float


# -- intertrial analysis ------------------------------------------------------------------------

class IntertrialSaveContext(TypedDict):
    session_id: str
    trial_id: int
    batch_id: Optional[str]
    location: str


class IntertrialErrorContext(TypedDict):
    session_id: str
    trial_id: int
    batch_id: Optional[str]
    error: str


# -- counters and reach analysis ----------------------------------------------------------------

class DayStartedContext(TypedDict):
    date: float  # seconds since the epoch
    day_path: NotRequired[str]


class ReachEventMethodLike(str, Enum):
    NONE = "none"
    OTHER = "other"
    RIGHT_HAND = "right_hand"
    LEFT_HAND = "left_hand"
    TONGUE = "tongue"


class ReachEventOutcomeLike(str, Enum):
    NONE = "none"
    STALLED = "stalled"
    MISSED = "missed"
    DROPPED = "dropped"
    GRABBED = "grabbed"
    EATEN = "eaten"


class ReachEventLike(Protocol):
    """Any object with these read-only attributes (e.g. a reach-event dataclass) may be sent."""

    @property
    def init(self) -> int: ...

    @property
    def end(self) -> Optional[int]: ...

    @property
    def max(self) -> Optional[int]: ...

    @property
    def method(self) -> str: ...

    @property
    def outcome(self) -> str: ...

    @property
    def delay_since_presented(self) -> float: ...


class ReachEventDict(TypedDict):
    init: int
    end: Optional[int]
    max: Optional[int]
    method: ReachEventMethodLike
    outcome: ReachEventOutcomeLike
    delay_since_presented: float


class TrialReachEventsContext(TypedDict):
    session_id: str
    trial_id: int
    batch_id: Optional[str]
    trial_reach_events: Sequence[Union[ReachEventLike, ReachEventDict]]


class IntertrialResponseDataLike(Protocol):
    """Any object with these read-only attributes may be sent as an intertrial response."""

    @property
    def rh_max_vp_list(self) -> Sequence[Optional[Sequence[float]]]: ...

    @property
    def reach_events(self) -> Sequence[ReachEventLike]: ...

    @property
    def other_events(self) -> Sequence[ReachEventLike]: ...

    @property
    def hand_events(self) -> Sequence[ReachEventLike]: ...

    @property
    def food_consumed(self) -> int: ...

    @property
    def successful_reaches(self) -> int: ...

    @property
    def total_reaches(self) -> int: ...


class IntertrialResponseDict(TypedDict):
    rh_max_vp_list: Sequence[Optional[Sequence[float]]]
    reach_events: Sequence[Union[ReachEventLike, ReachEventDict]]
    other_events: Sequence[Union[ReachEventLike, ReachEventDict]]
    hand_events: Sequence[Union[ReachEventLike, ReachEventDict]]
    food_consumed: int
    successful_reaches: int
    total_reaches: int


class IntertrialResponseContext(TypedDict):
    session_id: str
    trial_id: int
    batch_id: Optional[str]
    response_data: Union[IntertrialResponseDataLike, IntertrialResponseDict]


class PelletShiftContext(TypedDict):
    session_id: str
    trial_id: int
    batch_id: Optional[str]
    source: ApiPelletShiftSource
    shift: Vector3Context
    deferred: bool  # True when the shift was calculated but not applied


# -- training -----------------------------------------------------------------------------------

class TrainingModeContext(TypedDict):
    training_mode: ApiTrainingMode


class TrainingPlanContext(TypedDict):
    training_plan_id: UUID
