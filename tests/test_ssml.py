"""SSML documents read into plans (chattts.ssml): every element on small documents, the
ChatTTS controls, warnings, and every limit and hostile document (docs/ssml.md).

``<say-as>`` readings are in test_ssml_sayas.py."""

from __future__ import annotations

import math
import time
import tracemalloc
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chattts import errors, ssml
from chattts.ssml import Break, Mark, Plan, Prosody, Speak, SsmlError
from chattts.ssml.sayas import INTERPRET_AS


def parse(body: str, attrs: str = "") -> Plan:
    """``body`` inside a ``<speak>`` element, parsed with warnings turned into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return ssml.parse(f"<speak{attrs}>{body}</speak>")


def speaks(body: str, attrs: str = "") -> list[Speak]:
    return [i for i in parse(body, attrs).items if isinstance(i, Speak)]


def texts(body: str, attrs: str = "") -> list[str]:
    return [s.text for s in speaks(body, attrs)]


def error(doc: str) -> SsmlError:
    with pytest.raises(SsmlError) as info:
        ssml.parse(doc)
    return info.value


# ---- detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "<speak>Hi</speak>",
        "  \n<speak version='1.1'>Hi</speak>",
        '<?xml version="1.0" encoding="UTF-8"?>\n<speak>Hi</speak>',
        "\ufeff<?xml version='1.0'?><!-- a comment --><speak/>",
    ],
)
def test_is_ssml(text):
    assert ssml.is_ssml(text)


@pytest.mark.parametrize(
    "text", ["Hello <speak>", "<speaker>x</speaker>", "<?xml version='1.0'?><p/>", "", None, 3]
)
def test_is_not_ssml(text):
    assert not ssml.is_ssml(text)


# ---- structure -----------------------------------------------------------------------------


def test_plain_text_is_one_item_with_the_callers_defaults():
    plan = parse("  Hello   world.\n  How are you?  ")
    assert plan == Plan(items=(Speak("Hello world. How are you?", "Hello world. How are you?"),))
    assert plan.lang is None


def test_paragraphs_and_sentences_are_items():
    body = "<p><s>One.</s><s>Two.</s></p><p>Three. Four.</p>Five."
    assert texts(body) == ["One.", "Two.", "Three. Four.", "Five."]


def test_the_speak_language_is_the_plans_and_every_items():
    plan = parse("Hi <lang xml:lang='zh-CN'>你好</lang> there", ' xml:lang="en-US"')
    assert plan.lang == "en"
    assert [(s.text, s.lang) for s in plan.items] == [("Hi", "en"), ("你好", "zh"), ("there", "en")]


@pytest.mark.parametrize(
    "tag,lang", [("en-GB", "en"), ("EN", "en"), ("zh-TW", "zh"), ("cmn-Hans-CN", "zh")]
)
def test_language_tags(tag, lang):
    assert speaks(f"<p xml:lang='{tag}'>x</p>")[0].lang == lang


def test_an_unsupported_language_warns_once_and_is_detected():
    with pytest.warns(errors.SsmlWarning, match="'fr-FR' is not supported") as record:
        plan = ssml.parse("<speak><p xml:lang='fr-FR'>Bonjour</p><s xml:lang='fr-FR'>x</s></speak>")
    assert len(record) == 1
    assert [s.lang for s in plan.items] == [None, None]


def test_lang_needs_its_attribute():
    assert "<lang> needs an xml:lang" in str(error("<speak><lang>x</lang></speak>"))


def test_chinese_lines_join_without_a_space():
    assert texts("你好，\n  世界。\nHello\nworld") == ["你好，世界。 Hello world"]


# ---- break ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs,seconds",
    [
        ('time="500ms"', 0.5),
        ('time="2s"', 2.0),
        ('time="1.25s"', 1.25),
        ('time="10s"', 10.0),
        ('strength="x-weak"', 0.25),
        ('strength="weak"', 0.5),
        ('strength="medium"', 0.75),
        ('strength="strong"', 1.0),
        ('strength="x-strong"', 1.25),
        ("", 0.75),
        ('strength="x-strong" time="300ms"', 0.3),
    ],
)
def test_break_splits_the_text_around_its_silence(attrs, seconds):
    plan = parse(f"Before<break {attrs}/>after")
    assert plan.items == (Speak("Before", "Before"), Break(seconds), Speak("after", "after"))
    assert plan.break_seconds == seconds


@pytest.mark.parametrize("attrs", ['strength="none"', 'time="0ms"'])
def test_a_break_of_nothing_is_no_item_and_no_boundary(attrs):
    assert parse(f"Before <break {attrs}/>after").items == (Speak("Before after", "Before after"),)


@pytest.mark.parametrize(
    "attrs,message",
    [
        ('time="fast"', "break time 'fast'"),
        ('time="-1s"', "break time '-1s'"),
        ('time="11s"', "longer than the 10 s"),
        ('strength="huge"', "unknown break strength 'huge'"),
    ],
)
def test_bad_breaks(attrs, message):
    e = error(f"<speak>\n  x<break {attrs}/></speak>")
    assert message in str(e) and (e.line, e.column) == (2, 4)


# ---- prosody and emphasis --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,rate",
    [
        ("x-slow", 0.5),
        ("slow", 0.75),
        ("medium", 1.0),
        ("default", 1.0),
        ("fast", 1.25),
        ("x-fast", 1.5),
        ("80%", 0.8),
        ("+20%", 1.2),
        ("-20%", 0.8),
        ("1.5", 1.5),
        ("250%", 2.5),
    ],
)
def test_prosody_rate(value, rate):
    (item,) = speaks(f"<prosody rate='{value}'>x</prosody>")
    assert item.prosody == Prosody(rate=pytest.approx(rate))


@pytest.mark.parametrize(
    "value,semitones",
    [
        ("x-low", -6),
        ("low", -3),
        ("medium", 0),
        ("high", 3),
        ("x-high", 6),
        ("+2st", 2),
        ("-3.5st", -3.5),
        ("+10%", 12 * math.log2(1.1)),
        ("-10%", 12 * math.log2(0.9)),
        ("200%", 12),
    ],
)
def test_prosody_pitch(value, semitones):
    (item,) = speaks(f"<prosody pitch='{value}'>x</prosody>")
    assert item.prosody.pitch == pytest.approx(semitones)


@pytest.mark.parametrize(
    "value,db",
    [
        ("silent", -math.inf),
        ("x-soft", -12),
        ("soft", -6),
        ("medium", 0),
        ("loud", 6),
        ("x-loud", 12),
        ("+6dB", 6),
        ("-3dB", -3),
        ("-3.5db", -3.5),
        ("50", 20 * math.log10(0.5)),
        ("0", -math.inf),
        ("+50%", 20 * math.log10(1.5)),
        ("-50%", 20 * math.log10(0.5)),
    ],
)
def test_prosody_volume(value, db):
    (item,) = speaks(f"<prosody volume='{value}'>x</prosody>")
    assert item.prosody.volume == pytest.approx(db)


def test_nested_prosody_composes_and_is_restored():
    body = (
        "a<prosody rate='slow' pitch='+2st' volume='-6dB'>b"
        "<prosody rate='80%' pitch='-3st' volume='+2dB'>c</prosody>d</prosody>e"
    )
    items = speaks(body)
    assert [i.text for i in items] == ["a", "b", "c", "d", "e"]
    assert [i.prosody for i in items] == [
        Prosody(),
        Prosody(0.75, 2.0, -6.0),
        Prosody(0.6, -1.0, -4.0),
        Prosody(0.75, 2.0, -6.0),
        Prosody(),
    ]
    assert items[0].prosody.neutral and not items[2].prosody.neutral


@pytest.mark.parametrize(
    "body,message",
    [
        ("<prosody rate='zoom'>x</prosody>", "unknown prosody rate 'zoom'"),
        ("<prosody rate='-1'>x</prosody>", "takes no sign"),
        ("<prosody rate='0%'>x</prosody>", "not a positive speed"),
        ("<prosody rate='500%'>x</prosody>", "rate comes to 5"),
        ("<prosody rate='x-slow'><prosody rate='x-slow'><prosody rate='x-slow'>x", "0.125"),
        ("<prosody pitch='+50Hz'>x</prosody>", "hertz are not supported"),
        ("<prosody pitch='200Hz'>x</prosody>", "hertz are not supported"),
        ("<prosody pitch='+13st'>x</prosody>", "pitch comes to 13 st"),
        ("<prosody pitch='x-high'><prosody pitch='x-high'><prosody pitch='+1st'>x", "13 st"),
        ("<prosody pitch='-100%'>x</prosody>", "not a positive frequency"),
        ("<prosody volume='+21dB'>x</prosody>", "volume comes to 21 dB"),
        ("<prosody volume='-41dB'>x</prosody>", "-40..20 dB"),
        ("<prosody volume='x-loud'><prosody volume='x-loud'>x", "24 dB"),
        ("<prosody volume='150'>x</prosody>", "a number is 0 to 100"),
        ("<prosody volume='+6'>x</prosody>", "unknown prosody volume '+6'"),
    ],
)
def test_bad_or_out_of_range_prosody(body, message):
    e = error(f"<speak>\n{body}</speak>")
    assert message in e.reason and e.line == 2


def test_silent_volume_stays_silent_inside_louder_text():
    (item,) = speaks("<prosody volume='loud'><prosody volume='silent'>x</prosody></prosody>")
    assert item.prosody.volume == -math.inf


@pytest.mark.parametrize(
    "level,prosody",
    [
        ("strong", Prosody(0.9, 0.0, 4.0)),
        ("moderate", Prosody(0.95, 0.0, 2.0)),
        ("none", Prosody()),
        ("reduced", Prosody(1.1, 0.0, -4.0)),
        (None, Prosody(0.95, 0.0, 2.0)),
    ],
)
def test_emphasis(level, prosody):
    attr = f" level='{level}'" if level else ""
    items = speaks(f"It is <emphasis{attr}>very</emphasis> big")
    assert [(i.text, i.prosody) for i in items] == [
        ("It is", Prosody()),
        ("very", prosody),
        ("big", Prosody()),
    ]


def test_emphasis_composes_with_prosody():
    (item,) = speaks(
        "<prosody rate='2' volume='+6dB'><emphasis level='strong'>x</emphasis></prosody>"
    )
    assert item.prosody == Prosody(1.8, 0.0, 10.0)


def test_bad_emphasis_level():
    assert "unknown emphasis level 'loud'" in str(error("<speak><emphasis level='loud'/></speak>"))


def test_unsupported_prosody_attributes_warn():
    with pytest.warns(errors.SsmlWarning, match="contour"):
        plan = ssml.parse("<speak><prosody contour='(0%,+20Hz)'>x</prosody></speak>")
    assert plan.items == (Speak("x", "x"),)


# ---- voice ---------------------------------------------------------------------------------


def test_voices_switch_and_nest():
    body = (
        "Narrator. <voice name='alice'>Alice. <voice name='alice*0.7+bob*0.3'>Mix.</voice>"
        "Alice again.</voice><voice name='seed_42'>Seed.</voice>"
    )
    assert [(i.text, i.voice) for i in speaks(body)] == [
        ("Narrator.", None),
        ("Alice.", "alice"),
        ("Mix.", "alice*0.7+bob*0.3"),
        ("Alice again.", "alice"),
        ("Seed.", "seed_42"),
    ]


def test_a_speaker_string_is_a_voice():
    (item,) = speaks("<voice name='蘁淰敥欀'>x</voice>")
    assert item.voice == "蘁淰敥欀"


@pytest.mark.parametrize(
    "attrs,message",
    [
        ("", "<voice> needs a name"),
        ("name=''", "voice name is empty"),
        ("name='a+'", "an empty term"),
        ("name='a*x+b'", "must be a number"),
        ("name='a b'", "is not a voice name"),
    ],
)
def test_bad_voices(attrs, message):
    assert message in error(f"<speak><voice {attrs}>x</voice></speak>").reason


def test_voice_selection_attributes_warn():
    with pytest.warns(errors.SsmlWarning, match="gender"):
        ssml.parse("<speak><voice name='alice' gender='female'>x</voice></speak>")


# ---- sub, mark, phoneme, audio, unknown elements ---------------------------------------------


def test_sub_alias_is_spoken_and_captioned():
    (item,) = speaks("The <sub alias='World Wide Web Consortium'>W3C</sub> met.")
    assert item.text == item.caption == "The World Wide Web Consortium met."


def test_sub_needs_an_alias():
    assert "<sub> needs an alias" in error("<speak><sub>W3C</sub></speak>").reason


def test_marks_split_the_sentence_where_they_stand():
    plan = parse("<mark name='start'/>Hello <mark name='mid'/>big world.<mark name='end'/>")
    assert plan.items == (
        Mark("start"),
        Speak("Hello", "Hello"),
        Mark("mid"),
        Speak("big world.", "big world."),
        Mark("end"),
    )


def test_a_mark_needs_a_name():
    assert "<mark> needs a non-empty name" in error("<speak><mark name=' '/></speak>").reason


def test_phoneme_speaks_its_text_with_one_warning():
    doc = "<speak><phoneme alphabet='ipa' ph='təˈmeɪtoʊ'>tomato</phoneme> <phoneme>x</phoneme>"
    doc += "</speak>"
    with pytest.warns(errors.SsmlWarning, match="no phoneme or pinyin tokens") as record:
        plan = ssml.parse(doc)
    assert len(record) == 1
    assert plan.text == "tomato x"


@pytest.mark.parametrize("element", ["<audio src='file:///etc/hostname'/>", "<lexicon uri='x'/>"])
def test_audio_and_lexicons_are_refused(element):
    e = error(f"<speak>Hi\n  {element}</speak>")
    assert "never reads files or the network" in e.reason and (e.line, e.column) == (2, 3)


def test_metadata_is_not_spoken():
    assert texts("<metadata><x>rdf</x></metadata><meta name='a' content='b'/>Hi") == ["Hi"]


def test_unknown_elements_speak_their_text_and_warn_once_per_name():
    doc = (
        "<speak><amazon:effect name='whispered'>one</amazon:effect> <foo>two</foo> "
        "<amazon:effect>three</amazon:effect> <foo>four</foo> <w>five</w> <token>six</token>"
        "</speak>"
    )
    with pytest.warns(errors.ChatTTSWarning) as record:
        plan = ssml.parse(doc)
    assert sorted(str(r.message) for r in record) == [
        "unknown SSML element <amazon:effect>: its text is spoken",
        "unknown SSML element <foo>: its text is spoken",
    ]
    assert plan.text == "one two three four five six"


def test_unknown_say_as_speaks_its_text_with_a_warning():
    with pytest.warns(errors.SsmlWarning, match="'fraction'"):
        plan = ssml.parse("<speak><say-as interpret-as='fraction'>1/2</say-as></speak>")
    assert plan.items == (Speak("1/2", "1/2"),)


# ---- ChatTTS controls and tokens -----------------------------------------------------------

NS = ' xmlns:chattts="urn:chattts:ssml"'


def test_tokens_written_in_the_text_are_kept_and_not_captioned():
    (item,) = speaks("Well [uv_break] that is [laugh] funny [lbreak][laugh]. Ha[laugh]ha[lbreak]")
    assert item.text == "Well [uv_break] that is [laugh] funny [lbreak][laugh]. Ha[laugh]ha[lbreak]"
    assert item.caption == "Well that is funny. Ha ha"


@pytest.mark.parametrize("token", ["laugh", "uv_break", "v_break", "lbreak", "llbreak"])
def test_token_elements(token):
    (item,) = speaks(f"Ha <chattts:{token}/> ha <chattts:{token}/>.", NS)
    assert (item.text, item.caption) == (f"Ha [{token}] ha [{token}].", "Ha ha.")


def test_the_prefix_may_be_undeclared_or_another():
    assert texts("<chattts:laugh/>") == ["[laugh]"]
    assert texts("<c:laugh/>", ' xmlns:c="urn:chattts:ssml"') == ["[laugh]"]
    with pytest.warns(errors.SsmlWarning, match="<c:laugh>"):
        assert ssml.parse("<speak><c:laugh/>x</speak>").text == "x"


def test_refine_controls_compose_inner_over_outer():
    body = (
        "<chattts:oral level='2'>a<chattts:refine prompt='[laugh_0][break_6]'>b"
        "<chattts:refine oral='5'>c</chattts:refine></chattts:refine></chattts:oral>d"
    )
    assert [(i.text, i.refine_prompt) for i in speaks(body, NS)] == [
        ("a", "[oral_2]"),
        ("b", "[oral_2][laugh_0][break_6]"),
        ("c", "[oral_5][laugh_0][break_6]"),
        ("d", None),
    ]


def test_speed_control():
    items = speaks(
        "<chattts:speed level='3'>slow<chattts:speed level='7'>x</chattts:speed></chattts:speed>y",
        NS,
    )
    assert [(i.text, i.speed) for i in items] == [("slow", 3), ("x", 7), ("y", None)]


@pytest.mark.parametrize(
    "body,message",
    [
        ("<chattts:oral level='10'>x</chattts:oral>", "oral level '10' is not an integer 0..9"),
        ("<chattts:oral>x</chattts:oral>", "oral needs a level"),
        ("<chattts:speed level='-1'>x</chattts:speed>", "speed level '-1'"),
        ("<chattts:refine prompt='[oral_2]x'>x</chattts:refine>", "is not a sequence"),
        ("<chattts:refine prompt='[laugh_3]'>x</chattts:refine>", "[laugh_N] level '3'"),
        ("<chattts:refine break='8'>x</chattts:refine>", "refine break level '8'"),
        ("<chattts:refine>x</chattts:refine>", "needs a prompt, oral, laugh or break"),
        ("<chattts:giggle/>", "unknown ChatTTS control <chattts:giggle>"),
    ],
)
def test_bad_controls(body, message):
    e = error(f"<speak{NS}>\n  {body}</speak>")
    assert message in e.reason and (e.line, e.column) == (2, 3)


def test_everything_at_once_keeps_each_items_settings():
    body = (
        "<voice name='bob'><prosody rate='fast'><chattts:speed level='2'>"
        "<lang xml:lang='zh'>你好</lang></chattts:speed></prosody></voice>"
    )
    assert speaks(body, NS) == [
        Speak("你好", "你好", voice="bob", lang="zh", prosody=Prosody(rate=1.25), speed=2)
    ]


# ---- errors, limits and hostile documents ----------------------------------------------------


def test_an_error_names_line_and_column():
    doc = '<speak>\n  <p>\n    <prosody rate="zoom">x</prosody>\n  </p>\n</speak>'
    e = error(doc)
    assert (e.line, e.column) == (3, 5)
    assert str(e) == "line 3, column 5: unknown prosody rate 'zoom'"
    assert isinstance(e, errors.ChatTTSError) and isinstance(e, ValueError)


@pytest.mark.parametrize(
    "doc,line,column",
    [
        ("<speak>\n  <p>Hello</s>\n</speak>", 2, 13),
        ("<speak>a &nbsp; b</speak>", 1, 10),
        ("<speak>a</speak> junk", 1, 18),
        ("", 1, 1),
    ],
)
def test_malformed_xml_names_its_position(doc, line, column):
    e = error(doc)
    assert e.reason.startswith("malformed XML") and (e.line, e.column) == (line, column)


def test_the_root_must_be_speak():
    assert "root element must be <speak>" in error("<p>x</p>").reason
    assert "<speak> inside <speak>" in error("<speak><speak/></speak>").reason


def test_say_as_holds_text_only():
    e = error("<speak><say-as interpret-as='cardinal'>1<break/></say-as></speak>")
    assert "holds text only" in e.reason


def test_only_a_str_is_read():
    assert "is a str" in error(b"<speak/>").reason  # type: ignore[arg-type]


def test_size_limit():
    ok = "<speak>" + "a" * (ssml.MAX_DOCUMENT_BYTES - 15) + "</speak>"
    assert len(ok) == ssml.MAX_DOCUMENT_BYTES
    ssml.parse(ok)
    e = error(ok.replace("a", "é", 1))  # one more byte in UTF-8
    assert "100001 bytes, more than 100000" in e.reason and e.line is None


def test_depth_limit():
    def doc(depth):
        return "<speak>" + "<s>" * (depth - 1) + "x" + "</s>" * (depth - 1) + "</speak>"

    assert ssml.parse(doc(ssml.MAX_DEPTH)).text == "x"
    assert "nested deeper than 32" in error(doc(ssml.MAX_DEPTH + 1)).reason


def test_element_limit():
    def doc(n):
        return "<speak>" + "<mark name='m'/>" * (n - 1) + "</speak>"

    assert len(ssml.parse(doc(ssml.MAX_ELEMENTS)).items) == ssml.MAX_ELEMENTS - 1
    assert "more than 2000 elements" in error(doc(ssml.MAX_ELEMENTS + 1)).reason


def test_total_break_limit():
    twelve = "<break time='10s'/>" * 12
    assert parse(twelve).break_seconds == ssml.MAX_TOTAL_BREAK_SECONDS
    e = error(f"<speak>{twelve}\n<break time='1ms'/></speak>")
    assert "more than 120 s" in e.reason and (e.line, e.column) == (2, 1)


def _refused_fast(doc: str) -> SsmlError:
    """The error of ``doc``, checked to allocate under 16 MB (its time is printed, not asserted)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        e = error(doc)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert peak < 16 * 2**20, f"{peak} bytes allocated"  # bounded memory, not a timing
    print(f"refused in {elapsed * 1000:.1f} ms, {peak // 1024} KiB")
    return e


def test_billion_laughs_is_refused():
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE speak [{entities}]>\n<speak>&lol9;</speak>'
    e = _refused_fast(doc)
    assert "DTD" in e.reason and (e.line, e.column) == (2, 1)


def test_an_external_entity_is_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711", encoding="utf-8")
    for doc in (
        f'<!DOCTYPE speak [<!ENTITY x SYSTEM "{secret.as_uri()}">]><speak>&x;</speak>',
        f'<!DOCTYPE speak SYSTEM "{secret.as_uri()}"><speak>hi</speak>',
        f'<!DOCTYPE speak [<!ENTITY % p SYSTEM "{secret.as_uri()}"> %p;]><speak/>',
    ):
        e = _refused_fast(doc)
        assert "TOPSECRET" not in repr(e) + str(e.__cause__) + str(e.__context__)
    # and without a DTD, an entity reference is just undefined
    e = error("<speak>&x;</speak>")
    assert "undefined entity" in e.reason and "TOPSECRET" not in str(e)


def test_ten_thousand_nested_elements_are_refused():
    doc = "<speak>" + "<s>" * 10_000 + "x" + "</s>" * 10_000 + "</speak>"
    assert "nested deeper" in _refused_fast(doc).reason


def test_an_hour_of_breaks_is_refused():
    doc = "<speak>" + "<break time='10s'/>" * 360 + "</speak>"
    assert "more than 120 s" in _refused_fast(doc).reason


def test_one_error_class_for_everything():
    assert issubclass(errors.SsmlError, errors.ChatTTSError)
    assert issubclass(errors.SsmlWarning, errors.ChatTTSWarning)
    assert ssml.SsmlError is errors.SsmlError


def test_a_lone_surrogate_is_named_where_it_stands():
    e = error("<speak>\n  ab\ud800</speak>")
    assert "U+D800 is a lone surrogate" in e.reason and (e.line, e.column) == (2, 5)


_VALUES = ["12", "1,234", "-3.5", "2024-12-25", "14:30", "$12.50", "9" * 30, "", "你好", "x y"]
_FRAGMENTS = st.sampled_from(
    [
        "<p>", "</p>", "<s>", "</s>", "<break time='{v}ms'/>", "<break strength='{v}'/>",
        "<prosody rate='{v}%'>", "<prosody pitch='{v}st'>", "<prosody volume='{v}dB'>",
        "</prosody>", "<say-as interpret-as='{k}' format='{v}'>{v}</say-as>", "<voice name='{v}'>",
        "</voice>", "<mark name='{v}'/>", "<sub alias='{v}'>x</sub>", "<chattts:laugh/>",
        "<chattts:oral level='{v}'>", "</chattts:oral>", "<emphasis level='{v}'>", "</emphasis>",
        "<lang xml:lang='{v}'>", "</lang>", "&amp;", "<![CDATA[<x>]]>", "<!-- c -->", "\x00",
        "<foo:bar>", "</foo:bar>", "[laugh]", "{v}",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(_FRAGMENTS, st.sampled_from(_VALUES), st.sampled_from(sorted(INTERPRET_AS))),
        max_size=10,
    )
)
def test_any_document_gives_a_plan_or_an_ssml_error(fragments):
    body = "".join(f.replace("{v}", v).replace("{k}", k) for f, v, k in fragments)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plan = ssml.parse(f"<speak>{body}</speak>")
        except SsmlError as e:
            assert e.line is not None and e.column is not None, e
            return
    assert isinstance(plan, Plan)
    for item in plan.items:
        if isinstance(item, Speak):
            assert item.text.strip() and "[laugh]" not in item.caption
