"""The daemon's jobs, one module each: catalog (the loaded scenarios), enrol, advance,
send, notify, qualify; `retry` is the outboxes' retry policy. Jobs do not import each
other: what two of them share lives in `nurture.lifecycle`, `nurture.store` or the core."""
