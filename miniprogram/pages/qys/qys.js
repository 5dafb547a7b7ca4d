// Host page for the 契约锁 mini-program plugin (appId wxaf8f505686ddf66a).
//
// The integrator's H5 page runs in this mini-program's <web-view>; the qys SDK there calls
//   wx.miniProgram.navigateTo({ url: '/pages/qys/qys?page=<page>&ticket=<ticket>&env=<env>' })
// This page checks those three values, opens plugin://qyssdk-plugin/<page>, and once the plugin
// is done (or the user backs out of it) returns to the web-view, exactly once. The outcome is not
// passed along: the SDK asks the integrator's proxy for the confirmed result when the H5 page shows
// again, so nothing received here has to be trusted.
//
// Plain ES5 and no import/export: it runs as is on any base library, and the tests evaluate it as
// a classic script.
'use strict';

var PLUGIN_PAGES = ['doc', 'personal-auth', 'enterprise-auth'];
var ENVS = ['com', 'cn', 'sandbox'];
// The ticket is put into the plugin URL verbatim, so only unreserved URL characters are accepted:
// nothing can add a parameter or change the path.
var TICKET = /^[A-Za-z0-9._~-]{1,512}$/;

// onLoad gets the query values percent-encoded on some base libraries and decoded on others;
// decoding a valid value twice is harmless (it has no '%'), and a malformed one is kept as is
// and then rejected by the checks.
function decode(value) {
  if (typeof value !== 'string') return '';
  try {
    return decodeURIComponent(value);
  } catch (e) {
    return value;
  }
}

function pluginUrl(options) {
  var page = decode(options && options.page);
  var ticket = decode(options && options.ticket);
  var env = decode(options && options.env) || 'com';
  if (PLUGIN_PAGES.indexOf(page) < 0) return { error: '参数错误：不支持的页面' };
  if (!TICKET.test(ticket)) return { error: '参数错误：ticket 无效' };
  if (ENVS.indexOf(env) < 0) return { error: '参数错误：环境无效' };
  return { url: 'plugin://qyssdk-plugin/' + page + '?ticket=' + ticket + '&env=' + env + '&hasCb=true' };
}

Page({
  data: { message: '正在打开契约锁…' },

  onLoad: function (options) {
    // Per-instance state lives on `this`, never in this shared definition object.
    this.qys = { url: '', opened: false, left: false };
    var target = pluginUrl(options);
    if (target.error) {
      this.fail(target.error);
      return;
    }
    this.qys.url = target.url;
  },

  // Opened once the page is ready: a navigateTo issued during onLoad can be dropped while the
  // page itself is still being pushed.
  onReady: function () {
    if (!this.qys || !this.qys.url) return;
    var that = this;
    var channel = null;
    var pendingJump = false;
    // Each plugin callback sends the plugin back to this page (jumpTo without url); this page's
    // onShow then does the one return to the web-view, so the callbacks never navigate themselves.
    function done() {
      that.setData({ message: '已完成，正在返回…' });
      if (channel) channel.emit('jumpTo');
      else pendingJump = true; // fired before success() handed over the channel
    }
    wx.navigateTo({
      url: this.qys.url,
      events: { signSuccessCb: done, authSuccessCb: done, authFailCb: done },
      success: function (res) {
        channel = res.eventChannel;
        that.qys.opened = true;
        if (pendingJump) {
          pendingJump = false;
          channel.emit('jumpTo');
        }
      },
      fail: function () {
        that.fail('无法打开契约锁插件，请确认小程序已添加该插件');
      }
    });
  },

  // Shown again after the plugin was opened: whether the plugin jumped back after an event or the
  // user backed out of it, this is the moment to return to the web-view. The first onShow (before
  // onReady) finds `opened` false, and `left` stops a second return.
  onShow: function () {
    if (this.qys && this.qys.opened) this.leave();
  },

  fail: function (message) {
    this.setData({ message: message });
    var that = this;
    // A modal, so the message is read before the page goes away; then back to the web-view.
    wx.showModal({
      title: '契约锁',
      content: message,
      showCancel: false,
      complete: function () {
        that.leave();
      }
    });
  },

  leave: function () {
    if (this.qys.left) return;
    this.qys.left = true;
    var that = this;
    wx.navigateBack({
      delta: 1,
      fail: function () {
        // Opened with no page below (e.g. from a share card): nothing to return to.
        that.setData({ message: '请返回上一页' });
      }
    });
  }
});
