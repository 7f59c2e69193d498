"""What the device application is doing (SET_APPLICATION_MODE) and how it trains
(SET_TRAINING_MODE); the values are those of 0.12."""
from enum import IntEnum


class ApiApplicationMode(IntEnum):
    IDLE = 0
    RUNNING = 100
    IN_DEVICE = 200
    IN_TRAINING = 300
    CALIBRATION_DCS = 1000
    CALIBRATION_3D = 1100


class ApiTrainingMode(IntEnum):
    UNDEFINED = 0
    MANUAL = 100
    MANUAL_WITH_PROTOCOL = 200
    AUTOMATIC = 300
