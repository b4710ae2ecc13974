"""Who made a tracking request: a person, or a machine that looks like one.

Mail-security scanners (Microsoft Safe Links, Barracuda, Mimecast, Proofpoint) open every
link of an email as it arrives; privacy proxies (Apple Mail Privacy Protection, Google's and
Yahoo's image proxies) fetch every image whether or not anyone reads it. Each event gets a
`Verdict`: `human` (it scores), `suspect` (one weak signal: it scores at `suspect_weight`)
or `machine` (it scores nothing), with the reasons, so every discount can be explained.

Signals, read from the event's properties as the tracking endpoints record them:
`ip` (client address), `user_agent`, the `honeypot` event type (a request for the hidden link
every tracked email carries; a click with `honeypot: true` counts the same), `send` and `link`
(which email, which link), `seconds_after_delivery` or `sent_at` (when the email was
delivered), and the older `proxy` flag.

Strong signals make a machine on their own: the honeypot link and anything on the same send
within `honeypot_seconds` of it, a scanner's address or user agent, an open or click sooner
than `min_seconds_after_delivery`, several links of one email within `burst_seconds`, the same
link clicked `repeat_machine` times within `repeat_seconds`, and an open fetched by a privacy
proxy. Weak signals (a click through a privacy proxy's address or user agent, an empty user
agent) make a suspect; two weak signals make a machine (the "2 of 3 signals" idea).
A repeat of the same open or click within `repeat_seconds` is not a machine, but counts once.

Pure: the caller passes the events and the parsed `MachineData`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from nurture.scenario.expr import EventRecord
from nurture.scoring.model import BotGuards

VerdictKind = Literal["human", "suspect", "machine"]
MachineKind = Literal["scanner", "proxy"]
MACHINE_KINDS: tuple[MachineKind, ...] = ("scanner", "proxy")
TRACKED = ("open", "click")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Network:
    name: str
    kind: MachineKind
    networks: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class AgentRule:
    name: str
    kind: MachineKind
    patterns: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class MachineData:
    """Address ranges and user-agent patterns of known scanners and proxies."""

    networks: tuple[Network, ...] = ()
    agents: tuple[AgentRule, ...] = ()

    def network_of(self, ip: str) -> tuple[Network, IPNetwork] | None:
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return None
        for network in self.networks:
            for block in network.networks:
                if address.version == block.version and address in block:
                    return network, block
        return None

    def agent_of(self, agent: str) -> AgentRule | None:
        for rule in self.agents:
            if any(p.search(agent) for p in rule.patterns):
                return rule
        return None


class MachineDataError(ValueError):
    """A problem in a machine-data file; the message names the entry."""


def parse_machine_data(data: Any) -> MachineData:
    """`MachineData` from the parsed YAML/JSON of a machine-data file (see `data/machines.yaml`)."""
    if not isinstance(data, Mapping):
        raise MachineDataError("a machine-data file is a mapping with 'networks' and 'user_agents'")
    unknown = set(data) - {"networks", "user_agents"}
    if unknown:
        raise MachineDataError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}: use networks, user_agents")
    networks: list[Network] = []
    for index, entry in enumerate(data.get("networks") or []):
        name, kind = _name_and_kind(entry, f"networks[{index}]")
        blocks = []
        for text in entry.get("ranges") or []:
            try:
                blocks.append(ipaddress.ip_network(str(text), strict=False))
            except ValueError as exc:
                raise MachineDataError(f"networks[{index}] ({name}): bad address range {text!r}: {exc}") from exc
        networks.append(Network(name, kind, tuple(blocks)))
    agents: list[AgentRule] = []
    for index, entry in enumerate(data.get("user_agents") or []):
        name, kind = _name_and_kind(entry, f"user_agents[{index}]")
        patterns = []
        for text in entry.get("patterns") or []:
            try:
                patterns.append(re.compile(str(text), re.IGNORECASE))
            except re.error as exc:
                raise MachineDataError(f"user_agents[{index}] ({name}): bad pattern {text!r}: {exc}") from exc
        agents.append(AgentRule(name, kind, tuple(patterns)))
    return MachineData(tuple(networks), tuple(agents))


def _name_and_kind(entry: Any, where: str) -> tuple[str, MachineKind]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise MachineDataError(f"{where}: each entry needs a name")
    kind = entry.get("kind")
    if kind not in MACHINE_KINDS:
        raise MachineDataError(f"{where} ({entry['name']}): kind must be scanner or proxy, not {kind!r}")
    return entry["name"], kind


def network_part(ip: str) -> str:
    """The address with its host part dropped (/24 for IPv4, /48 for IPv6), for keeping longer.

    The network part of an address falls in the same shipped range as the address (all but one,
    Mimecast's 207.211.31.0/25, are /24 or wider), so verdicts survive the truncation.
    """
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def with_extra_agents(data: MachineData, globs: Sequence[str]) -> MachineData:
    """`data` plus the scoring file's own scanner user agents (case-insensitive globs)."""
    if not globs:
        return data
    patterns = tuple(re.compile(fnmatch.translate(g), re.IGNORECASE) for g in globs)
    return MachineData(data.networks, (*data.agents, AgentRule("listed in the scoring file", "scanner", patterns)))


@dataclass(frozen=True)
class Verdict:
    """What one event was: `human`, `suspect` or `machine`, and why; `repeat` counts once."""

    kind: VerdictKind = "human"
    reasons: tuple[str, ...] = ()
    repeat: bool = False

    @property
    def counts(self) -> bool:
        return self.kind != "machine" and not self.repeat

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


HUMAN = Verdict()


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def seconds_after_delivery(event: EventRecord) -> float | None:
    given = event.props.get("seconds_after_delivery")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given) if math.isfinite(given) else None  # JSON from a client may say -Infinity
    delivered = _as_time(event.props.get("sent_at"))
    if delivered is None:
        return None
    try:
        return (event.at - delivered).total_seconds()
    except TypeError:  # a naive sent_at against an aware event time
        return None


def _ref(value: Any) -> Hashable:
    """A send or link reference usable as a key, whatever was recorded."""
    if type(value) in _PLAIN:  # the common case, without isinstance's subclass walk
        return value  # type: ignore[no-any-return]
    return value if value is None or isinstance(value, str | int | float) else repr(value)


_PLAIN = frozenset({str, int, float, bool})
# The properties an event's own signals are read from: an event without any of them (and not
# a request for the hidden link) has none, whatever its type.
SIGNAL_PROPS = frozenset({"honeypot", "ip", "user_agent", "proxy", "seconds_after_delivery", "sent_at"})


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


def is_honeypot(event: EventRecord) -> bool:
    """A request for the hidden link (its own event type, or a click flagged `honeypot`)."""
    return event.type == "honeypot" or _truthy(event.props.get("honeypot"))


class Classifier:
    """Verdicts for one lead's events; sends belong to one lead, so that is the whole context."""

    def __init__(self, guards: BotGuards, data: MachineData) -> None:
        self.guards = guards
        self.data = data
        self._addresses: dict[str, tuple[Network, IPNetwork] | None] = {}
        self._agents: dict[str, AgentRule | None] = {}

    def _network(self, ip: str) -> tuple[Network, IPNetwork] | None:
        if ip not in self._addresses:
            if len(self._addresses) > 100_000:
                self._addresses.clear()
            self._addresses[ip] = self.data.network_of(ip)
        return self._addresses[ip]

    def _agent(self, agent: str) -> AgentRule | None:
        if agent not in self._agents:
            if len(self._agents) > 100_000:
                self._agents.clear()
            self._agents[agent] = self.data.agent_of(agent)
        return self._agents[agent]

    def classify(self, events: Sequence[EventRecord]) -> list[Verdict]:
        """One verdict per event, in the order given."""
        if self._plainly_human(events):
            return [HUMAN] * len(events)
        return self._classify(events)

    def _plainly_human(self, events: Sequence[EventRecord]) -> bool:
        """Whether every event is a person's beyond doubt: none has a signal of its own, and no
        two could make a burst or a repeat (no email has `burst_clicks` clicks, no link of an
        email was opened or clicked twice). Most leads' events are, and this one pass over
        them, without the time order, says so for what `_classify` would find the long way."""
        burst = self.guards.burst_clicks
        repeats = bool(timedelta(seconds=self.guards.repeat_seconds))
        clicks: dict[Hashable, int] = {}
        seen: set[tuple[Hashable, str, Hashable]] = set()
        strong: list[str] = []
        weak: list[str] = []
        for event in events:
            type_ = event.type
            props = event.props
            signalled = type_ == "honeypot" or not SIGNAL_PROPS.isdisjoint(props)
            if signalled and (self._signals(event, strong, weak) or strong or weak):
                return False
            if type_ != "open" and type_ != "click":
                continue
            send = props.get("send")
            if send is None:
                continue
            send = _ref(send)
            if type_ == "click":
                clicked = clicks.get(send, 0) + 1
                if clicked >= burst:
                    return False
                clicks[send] = clicked
            if repeats:
                key = (send, type_, _ref(props.get("link")))
                if key in seen:
                    return False
                seen.add(key)
        return True

    def _classify(self, events: Sequence[EventRecord]) -> list[Verdict]:
        """`classify` in full: each event's own signals, then the signals of events together."""
        count = len(events)
        strong: list[list[str]] = [[] for _ in range(count)]
        weak: list[list[str]] = [[] for _ in range(count)]
        honeypot = [False] * count
        for index, event in enumerate(events):
            if event.type == "honeypot" or not SIGNAL_PROPS.isdisjoint(event.props):
                honeypot[index] = self._signals(event, strong[index], weak[index])
        times = [event.at for event in events]
        order = sorted(range(count), key=times.__getitem__)
        if any(honeypot):
            self._honeypots(events, order, honeypot, strong)
        self._bursts(events, order, strong)
        repeats = self._repeats(events, order, strong)
        verdicts: list[Verdict] = []
        for index in range(count):
            reasons = strong[index]
            soft = weak[index]
            if reasons:
                verdicts.append(Verdict("machine", tuple(reasons + soft), index in repeats))
            elif len(soft) >= 2:
                verdicts.append(Verdict("machine", (*soft, "two weak signals together"), index in repeats))
            elif soft:
                verdicts.append(Verdict("suspect", tuple(soft), index in repeats))
            elif index in repeats:
                verdicts.append(Verdict("human", (repeats[index],), True))
            else:
                verdicts.append(HUMAN)
        return verdicts

    def _signals(self, event: EventRecord, strong: list[str], weak: list[str]) -> bool:
        """Adds the event's own signals; returns whether it is a request for the hidden link."""
        props = event.props
        type_ = event.type
        tracked = type_ in TRACKED
        honeypot = type_ == "honeypot" or _truthy(props.get("honeypot"))
        if honeypot:
            strong.append("requested the hidden link no person sees")
        ip = props.get("ip")
        if isinstance(ip, str) and ip:
            found = self._network(ip)
            if found is not None:
                network, block = found
                where = f"from {network.name} ({ip} in {block})"
                if network.kind == "scanner":
                    strong.append(where)
                elif type_ == "open" and self.guards.discount_proxy_opens:
                    strong.append(f"opened by a privacy proxy: {where}")
                elif type_ == "click":
                    weak.append(f"clicked through a privacy proxy: {where}")
        agent = props.get("user_agent")
        if isinstance(agent, str):
            agent = agent.strip()
            rule = self._agent(agent) if agent else None
            if rule is not None and rule.kind == "scanner":
                strong.append(f"known scanner user agent: {rule.name} ({agent[:60]})")
            elif rule is not None and type_ == "open" and self.guards.discount_proxy_opens:
                strong.append(f"opened by a privacy proxy: {rule.name} user agent")
            elif rule is not None and type_ == "click":
                weak.append(f"{rule.name} user agent on a click")
            elif not agent and tracked:
                weak.append("no user agent")
        proxied = type_ == "open" and self.guards.discount_proxy_opens and _truthy(props.get("proxy"))
        if proxied and not any(r.startswith("opened by a privacy") for r in strong):
            strong.append("opened by a privacy proxy")
        if tracked:
            after = seconds_after_delivery(event)
            if after is not None and after < self.guards.min_seconds_after_delivery:
                verb = "opened" if type_ == "open" else "clicked"
                strong.append(f"{verb} {int(max(after, 0))}s after delivery")
        return honeypot

    def _honeypots(
        self, events: Sequence[EventRecord], order: list[int], honeypot: list[bool], strong: list[list[str]]
    ) -> None:
        traps: dict[Any, list[datetime]] = defaultdict(list)
        for index in order:
            if honeypot[index]:
                send = events[index].props.get("send")
                if send is not None:
                    traps[_ref(send)].append(events[index].at)
        if not traps:
            return
        window = timedelta(seconds=self.guards.honeypot_seconds)
        for index in order:
            event = events[index]
            times = traps.get(_ref(event.props.get("send")))
            if not times or event.type not in TRACKED or honeypot[index]:
                continue
            nearest = min(times, key=lambda t: abs(event.at - t))
            if abs(event.at - nearest) <= window:
                gap = int(abs((event.at - nearest).total_seconds()))
                strong[index].append(f"{gap}s from a request for this email's hidden link")

    def _bursts(self, events: Sequence[EventRecord], order: list[int], strong: list[list[str]]) -> None:
        by_send: dict[Any, list[int]] = defaultdict(list)
        for index in order:
            event = events[index]
            if event.type == "click":
                send = event.props.get("send")
                if send is not None:
                    by_send[_ref(send)].append(index)
        window = timedelta(seconds=self.guards.burst_seconds)
        wanted = self.guards.burst_clicks
        for indexes in by_send.values():
            if len(indexes) < wanted:  # fewer clicks than a burst has links
                continue
            end = 0
            for start, first in enumerate(indexes):
                end = max(end, start)
                while end + 1 < len(indexes) and events[indexes[end + 1]].at - events[first].at <= window:
                    end += 1
                burst = indexes[start : end + 1]
                links = {_ref(events[i].props.get("link")) for i in burst}
                if len(links) >= wanted:
                    for i in burst:
                        note = f"{len(links)} links clicked within {self.guards.burst_seconds}s"
                        if not any("links clicked within" in r for r in strong[i]):
                            strong[i].append(note)

    def _repeats(self, events: Sequence[EventRecord], order: list[int], strong: list[list[str]]) -> dict[int, str]:
        """index → why it is a repeat; many repeats within the window make every one a machine."""
        window = timedelta(seconds=self.guards.repeat_seconds)
        repeats: dict[int, str] = {}
        if not window:
            return repeats
        groups: dict[tuple[Any, str, Any], list[int]] = defaultdict(list)
        for index in order:
            event = events[index]
            if event.type in TRACKED:
                send = event.props.get("send")
                if send is not None:
                    groups[(_ref(send), event.type, _ref(event.props.get("link")))].append(index)
        for indexes in groups.values():
            if len(indexes) < 2:  # neither a repeat nor a run
                continue
            run: list[int] = []
            for index in indexes:
                if run and events[index].at - events[run[0]].at <= window:
                    gap = int((events[index].at - events[run[0]].at).total_seconds())
                    repeats[index] = f"repeat of the same {events[index].type} {gap}s after the first (counts once)"
                    run.append(index)
                    continue
                self._flag_run(events, run, strong)
                run = [index]
            self._flag_run(events, run, strong)
        return repeats

    def _flag_run(self, events: Sequence[EventRecord], run: list[int], strong: list[list[str]]) -> None:
        if len(run) < self.guards.repeat_machine:
            return
        seconds = round((events[run[-1]].at - events[run[0]].at).total_seconds())
        for index in run:
            strong[index].append(f"{len(run)} requests for the same link within {seconds}s")


@dataclass
class ClassificationRate:
    """How a set of events was classified, for reports."""

    counts: dict[VerdictKind, int] = field(default_factory=lambda: {"human": 0, "suspect": 0, "machine": 0})

    def add(self, verdict: Verdict) -> None:
        self.counts[verdict.kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, kind: VerdictKind) -> float:
        return self.counts[kind] / self.total if self.total else 0.0
