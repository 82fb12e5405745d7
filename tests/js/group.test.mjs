// The SillyTavern extension's group view (clients/sillytavern/group.js) against an in-memory server that
// answers as docs/api.md's avatar routes do (ids, 201/200 on PUT, 429 past the cap, 404 for unknown ids).
// Run by tests/test_sillytavern_group.py (`node --test tests/js/`).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ServerError } from '../../clients/sillytavern/api.js';
import { authorOf, avatarIdFor, GroupView, groupMembers, lastAuthor, membersToShow } from '../../clients/sillytavern/group.js';

const ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** The agreed avatar API, in memory: `call(path, options)` as index.js's call() answers. */
class FakeServer {
    constructor({ maxAvatars = 8, avatars = true, refuse = [], unlisted = 0 } = {}) {
        this.maxAvatars = maxAvatars;
        this.unlisted = unlisted; // places another client takes between a listing and a PUT
        this.hasAvatars = avatars;
        this.refuse = new Set(refuse); // avatar ids whose image load is refused (400)
        this.avatars = new Map([['default', { emotion: 'neutral', loads: 0 }]]);
        this.log = [];
        this.call = (path, options = {}) => this.handle(path, options);
    }

    async handle(path, { method = 'GET', json, body } = {}) {
        this.log.push(`${method} ${path}`);
        const fail = (status, kind) => {
            throw new ServerError(kind, `${method} ${path}: ${status} ${status === 429 ? `at most ${this.maxAvatars} avatars` : 'no'}`, status);
        };
        const ok = (status, body) => ({ status, ok: true, json: async () => body });
        if (!this.hasAvatars && path.startsWith('/api/talkinghead/avatars')) {
            fail(404, 'missing');
        }
        if (path === '/api/talkinghead/avatars' && method === 'GET') {
            return ok(200, { avatars: [...this.avatars.keys()].map((id) => ({ id })), max_avatars: this.maxAvatars });
        }
        if (path === '/api/talkinghead/avatars' && method === 'POST') {
            // multipart: file (the image) and id
            const id = body.get('id');
            assert.match(id, ID);
            assert.ok(body.get('file') instanceof Blob);
            if (this.avatars.has(id)) {
                fail(409, 'rejected');
            }
            if (this.avatars.size + this.unlisted >= this.maxAvatars) {
                fail(429, 'rejected');
            }
            if (this.refuse.has(id)) {
                fail(400, 'rejected');
            }
            this.avatars.set(id, { emotion: 'neutral', loads: 1 });
            return ok(201, { id });
        }
        const match = path.match(/^\/api\/talkinghead\/avatars\/([^/]+)(?:\/(.+))?$/);
        assert.ok(match, `unexpected request ${method} ${path}`);
        const id = decodeURIComponent(match[1]);
        const action = match[2];
        assert.match(id, ID);
        if (!action && method === 'PUT') {
            if (this.avatars.has(id)) {
                return ok(200, { id });
            }
            if (this.avatars.size + this.unlisted >= this.maxAvatars) {
                fail(429, 'rejected');
            }
            this.avatars.set(id, { emotion: 'neutral', loads: 0 });
            return ok(201, { id });
        }
        const avatar = this.avatars.get(id);
        if (!avatar) {
            fail(404, 'missing');
        }
        if (!action && method === 'DELETE') {
            assert.notEqual(id, 'default');
            this.avatars.delete(id);
            return ok(200, { id, deleted: true });
        }
        if (action === 'load') {
            if (this.refuse.has(id)) {
                fail(400, 'rejected');
            }
            avatar.loads += 1;
        } else if (action === 'set_emotion') {
            avatar.emotion = json.emotion_name;
        }
        return ok(200, {});
    }

    members() {
        return [...this.avatars.keys()].filter((id) => id !== 'default');
    }
}

function character(avatar, name) {
    return { avatar, name };
}

const CHARACTERS = [character('Alice.png', 'Alice'), character('Bob the Brave.png', 'Bob'),
    character('Caröl (2).png', 'Carol'), character('Dave.png', 'Dave')];

function context(members = ['Alice.png', 'Bob the Brave.png', 'Caröl (2).png'], disabled = []) {
    return {
        groupId: '17',
        groups: [{ id: '17', name: 'Trio', members, disabled_members: disabled }],
        characters: CHARACTERS,
        chat: [],
    };
}

function view(server, toasts = []) {
    return new GroupView({
        call: server.call,
        image: async (c) => ({ blob: new Blob([c.avatar], { type: 'image/png' }), folder: c.name, fromSprite: false }),
        config: async () => ({ emotions: {}, animator: {} }),
        toast: (kind, text) => toasts.push([kind, text]),
    });
}

test('an avatar already there (another tab, this page before a reload) gets the member image, once', async () => {
    const server = new FakeServer();
    await server.call(`/api/talkinghead/avatars/${avatarIdFor('Alice.png')}`, { method: 'PUT' });
    const group = view(server);
    await group.sync(groupMembers(context()), true, null, false);
    assert.equal(server.avatars.get(avatarIdFor('Alice.png')).loads, 1);
    await group.sync(groupMembers(context()), true, null, true);
    assert.equal(server.avatars.get(avatarIdFor('Alice.png')).loads, 1);
    assert.equal(server.log.filter((line) => line.startsWith('PUT')).length, 1); // the test's own
});

test('avatar ids are URL-safe, readable, stable and distinct', () => {
    const ids = ['Alice.png', 'alice.png', 'Bob the Brave.png', 'Caröl (2).png', '日本語.png', 'default.png',
        '--x--.png', `${'a'.repeat(300)}.png`, '.png', ''].map(avatarIdFor);
    for (const id of ids) {
        assert.match(id, ID);
        assert.notEqual(id, 'default');
    }
    assert.equal(new Set(ids).size, ids.length);
    assert.equal(avatarIdFor('Alice.png'), avatarIdFor('Alice.png'));
    assert.match(avatarIdFor('Bob the Brave.png'), /^bob-the-brave-[0-9a-f]{8}$/);
    assert.match(avatarIdFor('Caröl (2).png'), /^carol-2-[0-9a-f]{8}$/);
    assert.match(avatarIdFor('日本語.png'), /^member-[0-9a-f]{8}$/);
});

test('group members leave out the muted, and messages name their author', () => {
    const group = groupMembers(context(undefined, ['Bob the Brave.png']));
    assert.deepEqual(group.members.map((m) => m.name), ['Alice', 'Carol']);
    assert.equal(groupMembers({ ...context(), groupId: null }), null);
    assert.equal(authorOf({ name: 'Bob', original_avatar: 'Bob the Brave.png' }), 'Bob the Brave.png');
    assert.equal(authorOf({ name: 'Carol', force_avatar: '/thumbnail?type=avatar&file=Car%C3%B6l%20(2).png' }), 'Caröl (2).png');
    assert.equal(authorOf({ is_user: true, original_avatar: 'x.png' }), null);
    const chat = [{ original_avatar: 'Alice.png' }, { original_avatar: 'Bob the Brave.png' }, { is_user: true }];
    assert.equal(lastAuthor(chat, group.members), 'Alice.png'); // Bob is muted
    assert.deepEqual(membersToShow(group.members, false, 'Caröl (2).png').map((m) => m.name), ['Carol']);
    assert.deepEqual(membersToShow(group.members, false, 'nobody').map((m) => m.name), ['Alice']);
});

test('all members get avatars of their own, each with its image and its own emotion', async () => {
    const server = new FakeServer();
    const group = view(server);
    const members = groupMembers(context());
    const shown = await group.sync(members, true, 'Alice.png', false);
    assert.deepEqual(shown.map((m) => m.name), ['Alice', 'Bob', 'Carol']);
    assert.deepEqual(server.members().sort(), shown.map((m) => m.id).sort());
    for (const id of server.members()) {
        assert.equal(server.avatars.get(id).loads, 1);
    }
    assert.ok(await group.setEmotion('Bob the Brave.png', 'anger'));
    assert.ok(await group.setEmotion('Alice.png', 'joy'));
    assert.equal(server.avatars.get(group.shownId('Bob the Brave.png')).emotion, 'anger');
    assert.equal(server.avatars.get(group.shownId('Alice.png')).emotion, 'joy');
    assert.equal(server.avatars.get(group.shownId('Caröl (2).png')).emotion, 'neutral');
    assert.equal(server.avatars.get('default').emotion, 'neutral');
    // Again: nothing to do, nothing asked.
    const before = server.log.length;
    await group.sync(members, true, 'Bob the Brave.png', false);
    assert.equal(server.log.length, before);
});

test('speaker only: one tile, the others kept; leaving the group deletes them all', async () => {
    const server = new FakeServer();
    const group = view(server);
    const members = groupMembers(context());
    assert.deepEqual((await group.sync(members, false, 'Bob the Brave.png', false)).map((m) => m.name), ['Bob']);
    assert.deepEqual((await group.sync(members, false, 'Alice.png', false)).map((m) => m.name), ['Alice']);
    assert.equal(server.members().length, 2); // Bob's stays: shown again at once when he speaks
    assert.equal(group.shownId('Bob the Brave.png'), null);
    assert.equal(await group.setEmotion('Bob the Brave.png', 'joy'), false); // not shown
    await group.clear();
    assert.deepEqual(server.members(), []);
    assert.ok(server.avatars.has('default'));
    assert.equal(group.active, false);
});

test('a member who leaves the group loses the avatar; another group starts afresh', async () => {
    const server = new FakeServer();
    const group = view(server);
    await group.sync(groupMembers(context()), true, null, false);
    const bob = group.shownId('Bob the Brave.png');
    await group.sync(groupMembers(context(['Alice.png', 'Caröl (2).png'])), true, null, false);
    assert.ok(!server.avatars.has(bob));
    assert.equal(server.members().length, 2);
    const other = { ...context(['Dave.png']), groupId: '18', groups: [{ id: '18', name: 'Solo', members: ['Dave.png'] }] };
    await group.sync(groupMembers(other), true, null, false);
    assert.deepEqual(server.members(), [avatarIdFor('Dave.png')]);
});

test('past the cap: one clear toast, and only the speaker shows', async () => {
    const server = new FakeServer({ maxAvatars: 3 }); // default + 2: too few for three members
    const toasts = [];
    const group = view(server, toasts);
    const members = groupMembers(context());
    const shown = await group.sync(members, true, 'Caröl (2).png', false);
    assert.deepEqual(shown.map((m) => m.name), ['Carol']);
    assert.deepEqual(server.members(), [avatarIdFor('Caröl (2).png')]);
    assert.equal(server.log.filter((line) => line === 'POST /api/talkinghead/avatars').length, 1); // none made in vain
    assert.equal(toasts.length, 1);
    assert.match(toasts[0][1], /at most 3 avatars.*only the character who speaks.*--talkinghead-max-avatars=4/s);
    // The next speaker takes the room; no second toast.
    assert.deepEqual((await group.sync(members, true, 'Alice.png', false)).map((m) => m.name), ['Alice']);
    assert.equal(toasts.length, 1);
});

test('room taken between the listing and the PUT: the speaker was made first and stays', async () => {
    const server = new FakeServer({ maxAvatars: 4, unlisted: 1 }); // lists room for 3, takes 2
    const toasts = [];
    const group = view(server, toasts);
    const shown = await group.sync(groupMembers(context()), true, 'Bob the Brave.png', false);
    assert.deepEqual(shown.map((m) => m.name), ['Bob']);
    assert.deepEqual(server.members(), [avatarIdFor('Bob the Brave.png')]); // the others' room given back
    assert.equal(server.avatars.get(avatarIdFor('Bob the Brave.png')).loads, 1);
    assert.equal(toasts.length, 1);
});

test('no room even for the speaker, or no avatars on the server: the caller uses the default avatar', async () => {
    const full = new FakeServer({ maxAvatars: 1 });
    const group = view(full, []);
    assert.equal(await group.sync(groupMembers(context()), false, 'Alice.png', false), null);
    assert.deepEqual(full.members(), []);
    const old = new FakeServer({ avatars: false });
    const legacy = view(old);
    assert.equal(await legacy.sync(groupMembers(context()), true, 'Alice.png', false), null);
    assert.equal(legacy.supported, false);
    assert.equal(legacy.active, false);
});

test('an image the server refuses is said once and that member is left out', async () => {
    const server = new FakeServer({ refuse: [avatarIdFor('Bob the Brave.png')] });
    const toasts = [];
    const group = view(server, toasts);
    const shown = await group.sync(groupMembers(context()), true, null, false);
    assert.deepEqual(shown.map((m) => m.name), ['Alice', 'Carol']);
    await group.sync(groupMembers(context()), true, null, false);
    assert.equal(toasts.length, 1);
    assert.match(toasts[0][1], /Bob's image/);
    assert.ok(!server.avatars.has(avatarIdFor('Bob the Brave.png')));
});

test('a restarted server: lost avatars are made again with their last emotion', async () => {
    const server = new FakeServer();
    const group = view(server);
    const members = groupMembers(context());
    await group.sync(members, true, null, false);
    await group.setEmotion('Alice.png', 'joy');
    server.avatars = new Map([['default', { emotion: 'neutral', loads: 0 }]]); // restarted
    await group.sync(members, true, null, true); // force: the stream broke, or the heartbeat found them gone
    const alice = server.avatars.get(avatarIdFor('Alice.png'));
    assert.equal(alice.loads, 1);
    assert.equal(alice.emotion, 'joy');
    assert.equal(server.members().length, 3);
});
