"""``ToolCallFolder``: the one place streamed tool-call fragments are folded by index."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from oneplan.protocols.canonical import Accumulator, Delta, ToolCall, ToolCallDelta, ToolCallFolder

_PIECE = st.text('{}":ab1 ,', min_size=1, max_size=4)


@st.composite
def calls_and_fragments(draw: st.DrawFn) -> tuple[list[ToolCall], list[ToolCallDelta]]:
    """Some calls, and fragments carrying them: each call's id, name and argument pieces in
    fragments of their own or together, the calls' fragments interleaved in any order (a call's
    own argument pieces keep theirs)."""
    count = draw(st.integers(0, 4))
    calls: list[ToolCall] = []
    streams: list[list[ToolCallDelta]] = []
    for index in range(count):
        pieces = draw(st.lists(_PIECE, max_size=4))
        call_id = draw(st.sampled_from([None, f"call_{index}_x"]))
        name = draw(st.sampled_from([None, f"tool_{index}"]))
        fragments = [ToolCallDelta(index=index, arguments=piece) for piece in pieces]
        for field, value in (("id", call_id), ("name", name)):
            if value is None:
                continue
            at = draw(st.integers(0, len(fragments)))
            if at < len(fragments) and draw(st.booleans()):  # on an argument fragment
                setattr(fragments[at], field, value)
            else:
                fragments.insert(at, ToolCallDelta(index=index, **{field: value}))
        if not fragments:
            fragments = [ToolCallDelta(index=index)]
        calls.append(ToolCall(id=call_id or f"call_{index}", name=name or "", arguments="".join(pieces)))
        streams.append(fragments)
    order: list[ToolCallDelta] = []
    while any(streams):
        stream = draw(st.sampled_from([s for s in streams if s]))
        order.append(stream.pop(0))
    return calls, order


@settings(max_examples=300, deadline=None)
@given(calls_and_fragments())
def test_fragments_in_any_order_fold_to_the_same_calls(
    case: tuple[list[ToolCall], list[ToolCallDelta]],
) -> None:
    calls, fragments = case
    folder = ToolCallFolder()
    sent: dict[int, list[str]] = {}  # what a renderer sends: held arguments, then each fragment's
    for fragment in fragments:
        slot, announced = folder.add(fragment)
        assert slot.index == fragment.index
        if announced:
            assert fragment.index not in sent and slot.name
            sent[fragment.index] = [slot.arguments]
        elif slot.announced:
            sent[fragment.index].append(fragment.arguments)
        else:
            assert not slot.name
    assert folder.calls() == calls
    for slot in folder.unnamed():
        sent[slot.index] = [slot.arguments]
    assert {index: "".join(parts) for index, parts in sent.items()} == {
        index: call.arguments for index, call in enumerate(calls)
    }
    arrival = list(dict.fromkeys(fragment.index for fragment in fragments))
    assert [slot.index for slot in folder.unnamed()] == [i for i in arrival if not calls[i].name]


def test_first_id_and_name_win() -> None:
    folder = ToolCallFolder()
    assert folder.add(ToolCallDelta(index=0, arguments='{"a"'))[1] is False
    slot, announced = folder.add(ToolCallDelta(index=0, id="call_1", name="first"))
    assert announced and slot.arguments == '{"a"'
    slot, announced = folder.add(ToolCallDelta(index=0, id="call_2", name="second", arguments=":1}"))
    assert not announced and slot.announced
    assert folder.calls() == [ToolCall(id="call_1", name="first", arguments='{"a":1}')]


def test_unnamed_calls_wait_in_arrival_order_and_clear_starts_over() -> None:
    folder = ToolCallFolder()
    for index in (2, 0):
        folder.add(ToolCallDelta(index=index, arguments="{}"))
    folder.add(ToolCallDelta(index=1, name="named"))
    assert [slot.index for slot in folder.unnamed()] == [2, 0]
    assert [call.id for call in folder.calls()] == ["call_0", "call_1", "call_2"]
    folder.clear()
    assert folder.calls() == [] and folder.unnamed() == []
    slot, announced = folder.add(ToolCallDelta(index=1, name="again"))
    assert announced and slot.arguments == ""


def test_accumulator_folds_through_the_folder() -> None:
    acc = Accumulator()
    acc.add(Delta(tool_calls=[ToolCallDelta(index=1, arguments="{}"), ToolCallDelta(index=0, name="f")]))
    acc.add(
        Delta(
            tool_calls=[ToolCallDelta(index=0, id="c", arguments="{"), ToolCallDelta(index=0, arguments="}")]
        )
    )
    assert acc.result(id="r", model="m", created=0).tool_calls == [
        ToolCall(id="c", name="f", arguments="{}"),
        ToolCall(id="call_1", name="", arguments="{}"),
    ]
