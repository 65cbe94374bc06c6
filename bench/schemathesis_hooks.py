"""schemathesis check for the fuzz drill (SCHEMATHESIS_HOOKS=bench.schemathesis_hooks).

Like its own `not_a_server_error`, except for one documented answer: 502 with code ``wecom_refused``, which
the API gives when WeCom itself refuses a request (a code WeCom no longer has, its quota). Every other 5xx
is a defect.
"""

import schemathesis


@schemathesis.check
def no_server_error(ctx, response, case):  # schemathesis's check signature
    if response.status_code < 500:
        return None
    if response.status_code == 502:
        try:
            if response.json()["error"]["code"] == "wecom_refused":
                return None
        except (ValueError, KeyError, TypeError):
            pass
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")
