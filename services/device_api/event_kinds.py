"""Every event kind of auto-trainer-api 0.12 with its number on the wire.

Ranges: 0-999 core/system, 1000-1999 behaviour, 2000-2999 device, 4000-4999 analysis,
5000-5999 training, 6000-6999 detectors and alarms, 7000-7999 animal. The payload each
kind carries is documented by its `*Context` type in `event_payloads` (or a status
dataclass); `build_event(kind, context)` pairs them. Member names are camelCase because
that is how 0.12 spells them and peers print them.
"""
from enum import IntEnum


class ApiPelletShiftSource(IntEnum):
    """What drove an intertrialPelletShift (PelletShiftContext.source)."""

    REACH_FAILURES = 1
    TONGUE_EATEN = 2


class ApiEventKind(IntEnum):
    # -- core / system
    emergencyStop = 101              # EmergencyStopContext
    emergencyResume = 102            # EmergencyResumeContext
    applicationLaunched = 201        # VersionContext
    applicationTerminating = 202     # ReasonContext
    applicationModeChanged = 301     # ApplicationModeContext
    calibrationDcsCompleted = 311    # no context
    calibrationDcsFailed = 312       # ReasonContext
    calibration3dCompleted = 321     # no context
    calibration3dFailed = 322        # ReasonContext
    propertyChanged = 501            # PropertyChangedContext (only where called out)
    systemStatus = 601               # ApiSystemStatus
    projectChanged = 701             # ProjectChangedContext
    projectTrialChanged = 702        # ProjectTrialChangedContext

    # -- behaviour: algorithm and tunnel (no context)
    algorithmPause = 1001
    algorithmResume = 1002
    tunnelEnter = 1101               # the animal physically entered
    tunnelExit = 1102

    # -- behaviour: hardware commands (CommandContext: the device command's uuid)
    pelletLoadBegin = 1202
    pelletLoadEnd = 1203
    pelletSendBegin = 1205
    pelletSendEnd = 1206
    pelletCoverBegin = 1208
    pelletCoverEnd = 1209
    pelletReleaseBegin = 1211
    pelletReleaseEnd = 1212
    pelletHomeBegin = 1214
    pelletHomeEnd = 1215
    pelletRetractBegin = 1220
    pelletRetractEnd = 1221
    pelletHomeReset = 1222           # PelletHomeResetContext (every N cycles)
    pelletDriftReset = 1223          # PelletDriftResetContext (drift exceeded)
    tunnelGateOpenBegin = 1230
    tunnelGateOpenEnd = 1231
    tunnelGateCloseBegin = 1232
    tunnelGateCloseEnd = 1233
    tunnelFanOnBegin = 1235
    tunnelFanOnEnd = 1236
    tunnelFanOffBegin = 1237
    tunnelFanOffEnd = 1238

    # -- session, trial and batch analysis
    # (0.12's order, which iteration and resolve_enum's messages follow, not numeric order)
    sessionStarted = 1331            # SessionStartedContext
    sessionEnded = 1332              # SessionEndedContext
    trialStarted = 1301              # TrialStartedContext
    trialCaptureEnded = 1305         # SessionTrialContext
    trialEnded = 1311                # TrialEndedContext
    batchAnalysisStarted = 1321      # BatchAnalysisStartedContext
    batchAnalysisEnded = 1322        # BatchAnalysisEndedContext

    # -- load cell and force (IsEnabledContext unless noted)
    headfixLoadCellEnabledChanged = 1401
    headfixLoadCellChangedInIntersession = 1405
    headfixLoadCellChangedWrongState = 1406
    headfixAutoTare = 1411           # no context
    headFixationForceDetectorChanged = 1421

    # -- first sightings in a trial (TrialSeenContext)
    trialAnimalSeen = 1501
    trialRightHandSeen = 1502
    trialPelletSeen = 1503

    # -- auto-clamp and baseline
    headfixBaselineChanged = 1601    # BaselineContext
    autoClampEnabledChanged = 1611   # IsEnabledContext
    autoClampIntensityChanged = 1612  # IntensityContext
    autoClampReleaseToneFreqChanged = 1613  # FrequencyContext
    autoClampReleaseDelayChanged = 1614     # DelayContext
    autoClampEngaged = 1621          # IntensityContext
    autoClampPreDisengage = 1622     # IntensityContext
    autoClampPlayReleaseTone = 1623  # ReleaseToneContext
    autoClampDisengaged = 1624       # IntensityContext

    # -- intertrial analysis (batch_id is None outside batch mode)
    intertrialSegmentationBegin = 1701      # AnalysisTrialContext
    intertrialSegmentationEnd = 1702        # AnalysisTrialContext
    intertrialSegmentationError = 1703      # IntertrialErrorContext (implies End)
    intertrialSegmentationSave = 1704       # IntertrialSaveContext
    intertrialSegmentationSaveError = 1705  # IntertrialErrorContext (implies Save)
    intertrialDetectionBegin = 1711
    intertrialDetectionEnd = 1712
    intertrialDetectionError = 1713
    intertrialDetectionSave = 1714
    intertrialDetectionSaveError = 1715
    intertrialResponse = 1720               # IntertrialResponseContext

    # -- pellet and reach counters (CountChangeContext unless noted)
    pelletPresentedCountChanged = 1800
    pelletConsumedCountChanged = 1802
    reachCountChanged = 1803
    successfulReachesCountChanged = 1804
    dayStarted = 1811                # DayStartedContext
    dayPelletPresentedCountChanged = 1812
    dayPelletConsumedCountChanged = 1813
    dayReachCountChanged = 1814
    daySuccessfulReachesCountChanged = 1815

    # -- reach analysis
    trialPelletPresented = 1901      # SessionTrialContext
    trialReachEvents = 1911          # TrialReachEventsContext
    intertrialPelletShift = 1921     # PelletShiftContext (also when not applied)

    # -- device (CommandContext)
    deviceCommandSend = 2001
    deviceCommandAcknowledge = 2002

    # -- analysis (IsEngagedContext)
    loadCellEngagedChanged = 4001
    headbarPressureEngagedChanged = 4011

    # -- training, sent by applications
    trainingModeChanged = 5001       # TrainingModeContext
    trainingPlanLoad = 5101          # TrainingPlanContext
    trainingPhaseEnter = 5201        # TrainingPhaseContext
    trainingPhaseExit = 5202
    trainingProgressUpdate = 5501

    # -- training, sent by the training package itself (context defined there)
    protocolEvent = 5801
    protocolPlanEvent = 5811
    protocolPhaseEvent = 5821
    protocolPredicateEvent = 5831
    protocolActionEvent = 5841
    protocolProgressEvent = 5851

    # -- detectors and alarms
    detectorChanged = 6001           # ApiDetectorStatus
    alarmChanged = 6501              # ApiAlarmStatus

    # -- animal (ApiAnimalStatus; animalSelected may carry None)
    animalCreated = 7001
    animalUpdated = 7002
    animalSelected = 7003

    unknown = 999999                 # no context
