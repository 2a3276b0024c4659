"""The names an order of nodes is made with (:mod:`keystrap.enrolment` says what
each means). Apart from enrolment, which loads the protocol and the crypto, so
that ``keystrap``'s parser can offer them as choices without loading either:
every command, ``--help`` included, builds that parser."""

KEY_MODES = ("shared", "diversified", "per-node")
PROFILE_NAMES = ("paper", "compact")  # wire versions 1 and 2, paired in enrolment.PROFILES
