"""Alarms, the detectors that raise them, and why an emergency stop or resume happened.

Hundreds group them: 1xx environment, 2xx animal emergency, 3xx behaviour emergency,
4xx device hardware, 5xx computer, 6xx maintenance, 7xx training, 8xx animal welfare.
"""
from enum import IntEnum


class ApiAlarmKind(IntEnum):
    externalDoors = 101
    animalMissing = 201
    animalImmobile = 210
    thrashing = 301
    deviceCommunication = 401
    systemFault = 501
    systemMaintenance = 601
    animalEvasion = 701
    animalWelfare = 801


class ApiDetectorKind(IntEnum):
    frontDoor = 101
    slidingDoor = 102
    loadCellThrash = 201
    audioThrash = 202
    deviceAckTimeOut = 401
    pelletStatusMessageInterruption = 411
    tunnelStatusMessageInterruption = 412
    lowFreeDiskSpace = 501
    mainThreadFrozen = 511
    boardUnexpectedReset = 521
    pelletRefillCountExceeded = 601
    cageCleaningRequired = 610
    consecutivePelletLoadFailureExceeded = 620
    animalAutoClampEvasion = 701
    animalLowPelletsConsumedPerDay = 801
    # 0.12 lists it last and has not yet assigned it to an alarm.
    pelletMisplaced = 301


class ApiEmergencyStopReason(IntEnum):
    unknown = 0
    alarm_monitor = 101
    diamond_coord_check = 201
    user_button = 301
    rpc_service = 401


class ApiEmergencyResumeReason(IntEnum):
    unknown = 0
    alarm_monitor_resume = 101
    alarm_monitor_status_change = 201  # no alarm condition remains
    user_button = 301
    rpc_service = 401
