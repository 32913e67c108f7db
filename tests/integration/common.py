"""Compatibility with the scripts not migrated yet: tests/lib/pbtest.py is
the harness (removed once every script imports it)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import pbtest  # noqa: E402
from pbtest import (DELIVER, HOST, IMAP_PORT, POP3_PORT, TARGET, Report,  # noqa: E402
                    compare_deliveries, delivered, env, fetchmail_want, first_diff, login,
                    mda_dir, mpop_want, msg_name, pop3, rc_string, users,
                    wait_port_closed_by_peer)

__all__ = ["DELIVER", "HOST", "IMAP_PORT", "POP3_PORT", "TARGET", "Report", "Expected",
           "TEST_TMP", "TIMEOUT", "compare_deliveries", "delivered", "env", "fetchmail_want",
           "first_diff", "login", "mda_dir", "mpop_want", "msg_name", "pop3", "rc_string",
           "users", "wait_port_closed_by_peer"]

TIMEOUT = pbtest.CASE_TIMEOUT
TEST_TMP = env("TEST_TMP", "/tmp")


def Expected(user, password, folder="INBOX"):
    return pbtest.Expected.imap(IMAP_PORT, user, password, folder)
