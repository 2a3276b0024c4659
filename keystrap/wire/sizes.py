"""Field sizes shared by all flights, in bytes."""

ID_SIZE = 8  # EUI-64 of a node (ID_i) or a controller (ID_c)
RN_SIZE = 16  # RN_i, RN_c: 128-bit randoms
KEY_SIZE = 16  # IK, PSK, SK_cs: AES-128 keys

TID_MAX = 2**32 - 1
TS_MAX = 2**32 - 1
