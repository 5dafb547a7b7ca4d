// The mini-program host page (miniprogram/pages/qys/qys.js) against test doubles.
//
// `wx` and `Page` below are test doubles: WeChat's runtime cannot run here. The doubles record
// every call and let each test play the WeChat side by hand (page lifecycle, the plugin accepting
// the navigation, plugin events, the user backing out). The page file is evaluated as a classic
// script in a fresh context that holds only `Page` and `wx`, as in WeChat: module syntax or a
// Node-only global would make it throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const dir = fileURLToPath(new URL('../../miniprogram/', import.meta.url));
const source = readFileSync(dir + 'pages/qys/qys.js', 'utf8');
const script = new vm.Script(source, { filename: 'qys.js' });

// One mini-program session: a fresh page instance and fresh wx records.
function session() {
  const calls = { navigateTo: [], navigateBack: 0, showModal: [], emit: [], setData: [] };
  const channel = { emit: (name, ...rest) => calls.emit.push([name, ...rest]) };
  const wx = {
    navigateTo: (opts) => calls.navigateTo.push(opts),
    navigateBack: () => { calls.navigateBack += 1; },
    showModal: (opts) => { calls.showModal.push(opts); opts.complete?.(); },
  };
  let definition;
  script.runInNewContext({ Page: (def) => { definition = def; }, wx });
  assert.equal(typeof definition, 'object', 'the file registers a page with Page({...})');
  const page = Object.assign({}, definition, {
    data: { ...definition.data },
    setData(d) { calls.setData.push(d); Object.assign(this.data, d); },
  });
  return {
    calls,
    page,
    // WeChat's order for a newly pushed page.
    load(options) { page.onLoad(options); page.onShow(); page.onReady(); },
    // The plugin page was pushed: navigateTo's success with its event channel.
    accept() {
      assert.equal(calls.navigateTo.length, 1, 'one plugin navigateTo');
      calls.navigateTo[0].success({ eventChannel: channel });
      page.onHide?.();
    },
    // The plugin page went away (jumpTo without url, or the user's back): the host is shown again.
    pluginClosed() { page.onShow(); },
  };
}

const PAGES = ['doc', 'personal-auth', 'enterprise-auth'];
const EVENTS = ['signSuccessCb', 'authSuccessCb', 'authFailCb'];

test('opens plugin://qyssdk-plugin/<page> with the ticket, env and hasCb=true', () => {
  for (const name of PAGES) {
    const s = session();
    s.load({ page: name, ticket: 'T', env: 'cn' });
    assert.equal(s.calls.navigateTo.length, 1, name);
    assert.equal(s.calls.navigateTo[0].url, `plugin://qyssdk-plugin/${name}?ticket=T&env=cn&hasCb=true`);
    assert.equal(s.calls.navigateBack, 0, 'nothing returns before the plugin is done');
    assert.equal(s.calls.showModal.length, 0);
  }
});

test('env defaults to com; sandbox is accepted', () => {
  let s = session();
  s.load({ page: 'doc', ticket: 'abc.DEF_1-~' });
  assert.equal(s.calls.navigateTo[0].url, 'plugin://qyssdk-plugin/doc?ticket=abc.DEF_1-~&env=com&hasCb=true');
  s = session();
  s.load({ page: 'doc', ticket: 'T', env: 'sandbox' });
  assert.equal(s.calls.navigateTo[0].url, 'plugin://qyssdk-plugin/doc?ticket=T&env=sandbox&hasCb=true');
});

test('URL-encoded page, ticket and env are decoded', () => {
  const s = session();
  s.load({ page: 'personal%2Dauth', ticket: 'T%2Dx%2E1%7E', env: 'c%6E' });
  assert.equal(s.calls.navigateTo.length, 1);
  assert.equal(s.calls.navigateTo[0].url, 'plugin://qyssdk-plugin/personal-auth?ticket=T-x.1~&env=cn&hasCb=true');
});

test('the three plugin events are wired', () => {
  const s = session();
  s.load({ page: 'doc', ticket: 'T', env: 'cn' });
  const { events, success } = s.calls.navigateTo[0];
  assert.deepEqual(Object.keys(events).sort(), [...EVENTS].sort());
  for (const e of EVENTS) assert.equal(typeof events[e], 'function', e);
  assert.equal(typeof success, 'function', 'success hands over the event channel');
});

for (const event of EVENTS) {
  test(`${event}: emits jumpTo once, then back to the web-view once`, () => {
    const s = session();
    s.load({ page: 'doc', ticket: 'T', env: 'cn' });
    s.accept();
    s.calls.navigateTo[0].events[event]({ contractId: '1' });
    assert.deepEqual(s.calls.emit, [['jumpTo']], 'jumpTo with no url, once');
    assert.equal(s.calls.navigateBack, 0, 'the handler leaves the return to onShow');
    s.pluginClosed();
    assert.equal(s.calls.navigateBack, 1);
    s.page.onShow(); // shown again while navigateBack is under way
    assert.equal(s.calls.navigateBack, 1, 'no second return');
    assert.deepEqual(s.calls.emit, [['jumpTo']]);
  });
}

test('the user backs out of the plugin: back to the web-view once, no jumpTo', () => {
  const s = session();
  s.load({ page: 'enterprise-auth', ticket: 'T', env: 'com' });
  s.accept();
  s.pluginClosed();
  s.page.onShow();
  assert.equal(s.calls.navigateBack, 1);
  assert.equal(s.calls.emit.length, 0);
});

test('an event fired before success() still emits jumpTo once', () => {
  const s = session();
  s.load({ page: 'doc', ticket: 'T', env: 'cn' });
  s.calls.navigateTo[0].events.signSuccessCb({});
  assert.equal(s.calls.emit.length, 0);
  s.accept();
  assert.deepEqual(s.calls.emit, [['jumpTo']]);
  s.pluginClosed();
  assert.equal(s.calls.navigateBack, 1);
});

test('the first onShow (before the plugin opens) does not return', () => {
  const s = session();
  s.page.onLoad({ page: 'doc', ticket: 'T', env: 'cn' });
  s.page.onShow();
  s.page.onShow();
  assert.equal(s.calls.navigateBack, 0);
  s.page.onReady();
  assert.equal(s.calls.navigateTo.length, 1);
});

test('the plugin cannot be opened: message, back once', () => {
  const s = session();
  s.load({ page: 'doc', ticket: 'T', env: 'cn' });
  s.calls.navigateTo[0].fail({ errMsg: 'navigateTo:fail' });
  assert.equal(s.calls.showModal.length, 1);
  assert.match(s.page.data.message, /插件/);
  assert.equal(s.calls.navigateBack, 1);
  s.page.onShow();
  assert.equal(s.calls.navigateBack, 1);
});

const BAD = [
  ['unknown page', { page: 'evil', ticket: 'T', env: 'cn' }],
  ['no page', { ticket: 'T', env: 'cn' }],
  ['page with a path', { page: 'doc/../x', ticket: 'T', env: 'cn' }],
  ['no ticket', { page: 'doc', env: 'cn' }],
  ['empty ticket', { page: 'doc', ticket: '', env: 'cn' }],
  ['ticket adding a parameter', { page: 'doc', ticket: 'T&env=com', env: 'cn' }],
  ['encoded ticket adding a parameter', { page: 'doc', ticket: 'T%26hasCb%3Dfalse', env: 'cn' }],
  ['ticket with a slash', { page: 'doc', ticket: 'a%2Fb', env: 'cn' }],
  ['ticket with a space', { page: 'doc', ticket: 'a b', env: 'cn' }],
  ['malformed percent in ticket', { page: 'doc', ticket: 'T%zz', env: 'cn' }],
  ['unknown env', { page: 'doc', ticket: 'T', env: 'prod' }],
  ['env with extra', { page: 'doc', ticket: 'T', env: 'cn&x=1' }],
  ['no options at all', undefined],
];
for (const [why, options] of BAD) {
  test(`bad input (${why}): no plugin, a message, back once`, () => {
    const s = session();
    s.load(options);
    assert.equal(s.calls.navigateTo.length, 0, 'the plugin is not opened');
    assert.match(s.page.data.message, /参数错误/);
    assert.equal(s.calls.showModal.length, 1);
    assert.match(s.calls.showModal[0].content, /参数错误/);
    assert.equal(s.calls.navigateBack, 1);
    s.page.onShow();
    assert.equal(s.calls.navigateBack, 1);
  });
}

test('app.json snippet, page config and template', () => {
  const app = JSON.parse(readFileSync(dir + 'app.json.snippet', 'utf8'));
  assert.deepEqual(app.plugins, { 'qyssdk-plugin': { version: '1.2.2', provider: 'wxaf8f505686ddf66a' } });
  assert.ok(app.pages.includes('pages/qys/qys'));
  const config = JSON.parse(readFileSync(dir + 'pages/qys/qys.json', 'utf8'));
  assert.equal(config.navigationBarTitleText, '契约锁');
  assert.match(readFileSync(dir + 'pages/qys/qys.wxml', 'utf8'), /\{\{message\}\}/);
});
