"""Profiles and the two responders, without a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from bench.fake_model import FakeModel, Text, ToolCall
from calls.llm.profiles import (
    Profile,
    ScriptRule,
    api_key_for,
    call_variables,
    default_profile,
    profile_for_agent,
    render,
)
from calls.llm.protocol import FrameError, encode, parse_frame
from calls.llm.responders import (
    AnswerContext,
    EndCall,
    PressDigit,
    Speak,
    ToolFinished,
    ToolStarted,
    Transfer,
    responder_for,
)
from calls.llm.responders.openai_chat import (
    REMINDER_NOTE,
    ToolCallDraft,
    chat_messages,
    tool_pieces,
    tool_specs,
)
from calls.llm.responders.scripted import scripted_reply
from calls.models import AgentProfile
from tests import llm_socket


def context(
    said: str = "", *, profile: Profile | None = None, reminder: bool = False
) -> AnswerContext:
    return AnswerContext(
        response_id=1,
        transcript=llm_socket.transcript(said) if said else (),
        reminder=reminder,
        profile=profile or Profile(),
        variables={},
    )


async def collect(context: AnswerContext) -> list[Any]:
    return [piece async for piece in responder_for(context.profile).answer(context)]


# --- profiles ------------------------------------------------------------------------------


def test_render_substitutes_known_variables_and_blanks_unknown_ones():
    assert render("Hi {{ name }}, {{missing}}!", {"name": "Ada"}) == "Hi Ada, !"


def test_call_variables_offer_call_facts_and_dynamic_variables():
    call = llm_socket.call_details(customer_name="Ada", from_number="+1999")["call"]
    variables = call_variables(call)
    assert variables["customer_name"] == "Ada"
    assert variables["from_number"] == "+1999", "the call's own dynamic variables win"
    assert variables["to_number"] == "+15550002222"
    assert call_variables(None) == {}


def test_the_default_profile_comes_from_the_file_with_the_responder_from_settings(settings):
    settings.AGENT_PROFILE_FILE = llm_socket.default_profile_path()
    settings.AGENT_RESPONDER = "openai"
    profile = default_profile()
    assert profile.responder == "openai"
    assert profile.begin_message.startswith("Hello!")
    assert profile.rules[0] == ScriptRule(
        keywords=("hours", "open", "close", "closing"),
        reply="We're open Monday to Friday, nine to five.",
    )


def test_an_unreadable_profile_file_is_a_configuration_error(settings, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    settings.AGENT_PROFILE_FILE = str(bad)
    with pytest.raises(ImproperlyConfigured, match="must hold a JSON object"):
        default_profile()
    settings.AGENT_PROFILE_FILE = str(tmp_path / "missing.json")
    with pytest.raises(ImproperlyConfigured, match="unusable"):
        default_profile()


@pytest.mark.django_db
def test_profile_for_agent_uses_the_active_row_else_the_default(settings):
    settings.AGENT_PROFILE_FILE = llm_socket.default_profile_path()
    AgentProfile.objects.create(agent_id="agent_a", responder="openai", temperature=0.7, rules=[])
    AgentProfile.objects.create(agent_id="agent_off", is_active=False, begin_message="Off")
    row = profile_for_agent("agent_a")
    assert (row.agent_id, row.responder, row.temperature) == ("agent_a", "openai", 0.7)
    assert row.fallback_line == Profile().fallback_line, "blank lines keep the built-in ones"
    assert profile_for_agent("agent_off").agent_id == ""
    assert profile_for_agent(None).agent_id == ""


def test_a_profile_names_the_variable_holding_its_key(settings, monkeypatch):
    settings.OPENAI_API_KEY = "sk-default"
    monkeypatch.setenv("TENANT_KEY", "sk-tenant")
    assert api_key_for(Profile()) == "sk-default"
    assert api_key_for(Profile(api_key_env="TENANT_KEY")) == "sk-tenant"


# --- protocol ------------------------------------------------------------------------------


def test_frames_are_compact_text_with_unicode_kept():
    assert encode({"content": "Núñez"}) == '{"content":"Núñez"}'


def test_a_reminder_is_parsed_like_a_response_request():
    message = parse_frame(json.dumps(llm_socket.request(4, "hm", kind="reminder_required")))
    assert (message.response_id, message.reminder) == (4, True)  # type: ignore[union-attr]


def test_odd_utterances_are_dropped_not_fatal():
    frame = {
        "interaction_type": "update_only",
        "transcript": [{"role": "user"}, 3, {"role": "user", "content": "ok"}],
    }
    assert parse_frame(json.dumps(frame)).transcript == [{"role": "user", "content": "ok"}]  # type: ignore[union-attr]


def test_utterances_keep_who_said_what_and_drop_the_word_timings():
    said = {"role": "user", "content": "hi", "words": [{"word": "hi", "start": 0, "end": 0.2}]}
    frame = {"interaction_type": "update_only", "transcript": [said]}
    assert parse_frame(json.dumps(frame)).transcript == [{"role": "user", "content": "hi"}]  # type: ignore[union-attr]


def test_a_response_request_needs_an_integer_id():
    with pytest.raises(FrameError, match="bad_response_id"):
        parse_frame('{"interaction_type": "response_required"}')


# --- scripted ------------------------------------------------------------------------------

SCRIPT = Profile(
    rules=(
        ScriptRule(keywords=("hours",), reply="Nine to five."),
        ScriptRule(keywords=("person",), reply="Transferring.", transfer_number="+1555"),
        ScriptRule(keywords=("bye",), reply="never used: end-call phrases come first"),
    ),
    end_call_phrases=("bye",),
    reminder_line="Still there, {{name}}?",
)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("What are your HOURS?", ("Nine to five.", None)),
        ("a person please", ("Transferring.", Transfer("+1555"))),
        ("ok bye", (Profile().closing_line, EndCall())),
        ("byelaw question", (Profile().fallback_line, None)),
        ("", (Profile().fallback_line, None)),
    ],
)
def test_the_scripted_reply(said, expected):
    assert scripted_reply(context(said, profile=SCRIPT)) == expected


async def test_the_scripted_responder_streams_words_then_the_action():
    pieces = await collect(context("a person please", profile=SCRIPT))
    assert pieces == [Speak("Transferring."), Transfer("+1555")]
    pieces = await collect(context("hours?", profile=SCRIPT))
    assert pieces == [Speak("Nine "), Speak("to "), Speak("five.")]


async def test_the_scripted_reminder_renders_variables():
    ctx = AnswerContext(1, (), True, SCRIPT, {"name": "Ada"})
    assert [p.text for p in await collect(ctx)] == ["Still ", "there, ", "Ada?"]


# --- openai --------------------------------------------------------------------------------


def test_the_transcript_becomes_chat_messages_behind_the_system_prompt():
    profile = Profile(system_prompt="Be brief.")
    transcript = [
        {"role": "agent", "content": "Hi"},
        {"role": "user", "content": "Hello"},
        {"role": "transfer_target", "content": "not for the model"},
        {"role": "user", "content": ""},
    ]
    ctx = AnswerContext(1, transcript, True, profile, {})
    assert chat_messages(ctx) == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": REMINDER_NOTE},
    ]


def test_tools_are_offered_only_when_enabled_and_transfer_only_with_a_number():
    assert tool_specs(Profile(tools_enabled=False)) == []
    names = [spec["function"]["name"] for spec in tool_specs(Profile())]
    assert names == ["end_call", "press_digit"]
    names = [spec["function"]["name"] for spec in tool_specs(Profile(transfer_number="+1"))]
    assert names == ["end_call", "transfer_call", "press_digit"]


def test_tool_calls_become_records_speech_and_an_action():
    draft = ToolCallDraft("call_1", "end_call", ['{"mess', 'age": "Bye"}'])
    assert tool_pieces(draft, Profile()) == [
        ToolStarted("call_1", "end_call", '{"message": "Bye"}'),
        ToolFinished("call_1", "Call ended.", True),
        Speak("Bye"),
        EndCall(),
    ]
    pieces = tool_pieces(ToolCallDraft("call_2", "press_digit", ['{"digit": "#"}']), Profile())
    assert pieces[-1] == PressDigit("#")
    pieces = tool_pieces(ToolCallDraft("call_3", "transfer_call", ["{}"]), Profile())
    assert pieces[-1] == ToolFinished("call_3", "Not available.", False)
    pieces = tool_pieces(ToolCallDraft("", "end_call", ["not json"]), Profile(closing_line="Bye."))
    assert isinstance(pieces[0], ToolStarted)
    assert pieces[0].tool_call_id.startswith("call_")
    assert pieces[2] == Speak("Bye.")


async def test_the_openai_responder_streams_from_the_endpoint(settings):
    model = FakeModel().start()
    try:
        model.script(
            "stream please", Text("Hello "), Text("there"), ToolCall("press_digit", {"digit": "2"})
        )
        settings.OPENAI_BASE_URL = model.base_url
        settings.OPENAI_API_KEY = ""
        pieces = await collect(context("stream please", profile=Profile(responder="openai")))
    finally:
        model.stop()
    assert pieces[:2] == [Speak("Hello "), Speak("there")]
    assert pieces[-1] == PressDigit("2")


async def test_a_reminder_line_is_spoken_without_asking_the_model():
    profile = Profile(responder="openai", reminder_line="Hello?")
    assert await collect(context(profile=profile, reminder=True)) == [Speak("Hello?")]
