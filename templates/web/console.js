// returnhub local console: a chat client for the console platform.
// Server push first: an EventSource on /console/api/stream (it resumes by itself
// with Last-Event-ID). Where EventSource is missing or keeps failing, it polls
// /console/api/messages every second (after=<last id>, since=<cursor>) and tries
// the stream again later. Both deliver the same answer, which `apply` renders:
// a card re-rendered in place when its rev changes, a row that committed late
// (below the last id) slotted into its place. Sends/clicks carry a fresh uuid
// each, so a double submit is one event on the server.
// All text from the server goes into the DOM through textContent, never innerHTML.
"use strict";

(() => {
  const POLL_MS = Number(document.body.dataset.pollMs) || 1000;
  // Signed in as one member, the page acts only as them; empty in demo mode (any member).
  const ME = document.body.dataset.me || "";
  const PHOTO_MAX = Number(document.body.dataset.photoMax) || 10485760;
  const MEMBERS_MS = 5000;
  const SSE_ERRORS = 3; // failed (re)connects in a row before falling back to polling
  const SSE_RETRY_MS = 60000; // how long to poll before trying the stream again
  const ROLE_CHIPS = {
    cs_agent: ["/查单 RC-", "/记录 RC- "],
    cs_lead: ["/同意 RC-", "/驳回 RC- 原因", "/转交 RC- @"],
    ops_director: ["/同意 RC-", "/驳回 RC- 原因"],
    finance_director: ["/同意 RC-", "/驳回 RC- 原因"],
    warehouse: ["/查单 SF"],
    risk: ["/查单 RC-", "/驳回退款 RC- 原因"],
    admin: ["/查单 RC-"],
  };
  const RUN_NOW = new Set(["/帮助"]);

  const $ = (id) => document.getElementById(id);
  const state = {
    members: [],
    user: null,
    lastId: 0,
    cursor: "",
    shown: new Map(), // message id -> {rev, el}
    timer: null,
    polling: false,
    generation: 0, // bumps on member switch so late answers are dropped
    locked: false,
    membersTimer: null,
    stream: null, // the open EventSource, if any
    streamErrors: 0,
    streamAfter: 0, // Date.now() after which the stream may be tried again
    caseShown: "", // the case whose timeline panel is open
  };

  // --- small helpers ------------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  let toastTimer = null;
  function toast(message, kind) {
    const t = $("toast");
    t.textContent = message;
    t.className = `toast ${kind || ""}`;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 3500);
  }

  function setConn(ok) {
    const live = Boolean(state.stream);
    $("conn").classList.toggle("down", !ok);
    $("conn").dataset.mode = live ? "push" : "poll";
    $("conn-text").textContent = ok ? (live ? "已连接 · 实时" : "已连接 · 轮询") : "连接中断，重试中";
  }

  // After a 401 the page stops polling: retrying every second cannot log anyone in.
  function locked(e) {
    if (!e || e.status !== 401) return false;
    state.locked = true;
    closeStream();
    clearTimeout(state.timer);
    clearInterval(state.membersTimer);
    setConn(false);
    $("conn-text").textContent = "未登录";
    const box = el("div", "placeholder", "登录已失效，请向管理员索取新的登录链接。");
    const again = el("a", null, "重新登录");
    again.href = "/console";
    box.append(again);
    $("timeline").replaceChildren(box);
    return true;
  }

  async function api(path, body) {
    const init = body === undefined
      ? { credentials: "same-origin" }
      : {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        };
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      const err = new Error((data && data.error) || `请求失败（${res.status}）`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function initial(name) { return (name || "?").slice(0, 1); }

  // --- members ------------------------------------------------------------------------
  function seenKey(name) { return `returnhub.seen.${name}`; }

  function renderMembers() {
    const box = $("members");
    box.replaceChildren();
    for (const m of state.members) {
      if (ME && m.name !== ME) continue; // the others are only transfer targets
      const item = el("button", "member");
      item.type = "button";
      item.dataset.name = m.name;
      if (m.name === state.user) item.classList.add("active");
      item.append(el("span", "avatar", initial(m.name)));
      const who = el("span", "member-who");
      who.append(el("span", "member-name", m.name));
      who.append(el("span", "member-roles", m.role_labels.join(" · ") || "无角色"));
      item.append(who);
      const seen = Number(localStorage.getItem(seenKey(m.name)) || 0);
      if (m.name !== state.user && m.last_id > seen) item.append(el("span", "unread", "新"));
      item.title = `${m.name} · ${m.role_labels.join(" · ")}`;
      item.addEventListener("click", () => selectMember(m.name));
      box.append(item);
    }
    if (!state.members.length) box.append(el("div", "empty", "没有成员：请在配置文件 [[members]] 中添加"));
  }

  async function loadMembers() {
    try {
      const data = await api("/console/api/members");
      state.members = data.members;
      renderMembers();
      setConn(true);
    } catch (e) {
      if (!locked(e)) setConn(false);
    }
  }

  function memberByName(name) { return state.members.find((m) => m.name === name); }

  function selectMember(name) {
    const m = memberByName(name);
    if (!m || (ME && name !== ME)) return;
    state.user = name;
    state.generation += 1;
    state.lastId = 0;
    state.cursor = "";
    state.shown.clear();
    localStorage.setItem("returnhub.user", name);
    if (decodeURIComponent(location.hash.slice(1)) !== name) {
      history.replaceState(null, "", `#${encodeURIComponent(name)}`);
    }
    $("chat-title").textContent = m.name;
    $("chat-roles").textContent = m.role_labels.join(" · ") || "无角色";
    $("chat-avatar").textContent = initial(m.name);
    $("timeline").replaceChildren(el("div", "placeholder", "正在加载聊天记录…"));
    renderChips(m);
    renderMembers();
    plainHint();
    $("input").focus();
    connect();
  }

  function renderChips(m) {
    const box = $("quick");
    box.replaceChildren();
    const chips = ["/帮助", "/查单 RC-"];
    for (const role of m.roles) {
      for (const c of ROLE_CHIPS[role] || []) if (!chips.includes(c)) chips.push(c);
    }
    for (const c of chips) {
      const chip = el("button", "chip", c);
      chip.type = "button";
      chip.title = RUN_NOW.has(c) ? "点击直接发送" : "点击填入输入框";
      chip.addEventListener("click", () => {
        if (RUN_NOW.has(c)) { sendText(c); return; }
        const input = $("input");
        input.value = c;
        input.focus();
        input.setSelectionRange(c.length, c.length);
        autosize();
      });
      box.append(chip);
    }
  }

  // --- timeline -----------------------------------------------------------------------
  function statusTone(text, closed) {
    if (/驳回|拒绝|挂起|异常|破损|缺配件|错发|调包|空包|失败|超时|风险/.test(text)) return "bad";
    if (/同意|通过|完好|已退款|已签收|完成|已处理/.test(text)) return "good";
    if (/转交|升级|催办|提醒/.test(text)) return "info";
    return closed ? "muted" : "pending";
  }

  function renderCard(msg) {
    const c = msg.card || {};
    const card = el("article", `card tone-${c.tone || "info"}${c.closed ? " closed" : ""}`);
    const head = el("header", "card-head");
    // The case id gets its own (clickable) chip, so the title need not repeat it.
    const title = c.case_id ? String(c.title || "").replace(` · ${c.case_id}`, "") : c.title;
    head.append(el("div", "card-title", title));
    if (c.case_id) {
      const id = el("button", "case-id", c.case_id);
      id.type = "button";
      id.title = "查看这张售后单";
      id.addEventListener("click", () => sendText(`/查单 ${c.case_id}`));
      const trail = el("button", "trail-btn", "时间线");
      trail.type = "button";
      trail.title = "查看这张售后单的全部经过";
      trail.addEventListener("click", () => openTimeline(c.case_id));
      head.append(id, trail);
    }
    card.append(head);
    if (c.summary) card.append(el("p", "card-summary", c.summary));
    if (c.fields && c.fields.length) {
      const dl = el("dl", "card-fields");
      for (const f of c.fields) {
        dl.append(el("dt", null, f.label));
        dl.append(el("dd", null, f.value));
      }
      card.append(dl);
    }
    appendList(card, "商品明细", "card-lines", c.lines);
    appendList(card, "客户历史", "card-history", c.history);
    if (c.status) {
      card.append(el("div", `card-status ${statusTone(c.status, c.closed)}`, c.status));
    }
    if (c.buttons && c.buttons.length) {
      const bar = el("div", "card-buttons");
      for (const b of c.buttons) {
        const btn = el("button", `btn ${b.style || "default"}`, b.label);
        btn.type = "button";
        btn.dataset.action = b.action;
        btn.disabled = Boolean(c.closed);
        btn.addEventListener("click", () => onButton(card, b));
        bar.append(btn);
      }
      card.append(bar);
      card.append(el("div", "card-prompt"));
    }
    return card;
  }

  function appendList(card, title, cls, items) {
    if (!items || !items.length) return;
    const box = el("section", cls);
    box.append(el("div", "list-title", title));
    const ul = el("ul");
    for (const line of items) ul.append(el("li", null, line));
    box.append(ul);
    card.append(box);
  }

  // An uploaded photo: the stored file once it is evidence for a case, else a label.
  function renderPhoto(msg) {
    const bubble = el("div", "bubble photo");
    if (!/^[0-9a-f]{64}$/.test(msg.sha256 || "")) {
      bubble.textContent = "[照片]";
      return bubble;
    }
    // The label until the file has loaded: pushed at once, the photo can show before its
    // handler has filed it as evidence (a 404 for a moment), so ask again a few times.
    bubble.append(el("span", null, "[照片]"));
    const src = `/console/api/evidence/${msg.sha256}`;
    const img = el("img");
    img.alt = "照片";
    let tries = 0;
    img.addEventListener("load", () => bubble.replaceChildren(img));
    img.addEventListener("error", () => {
      tries += 1;
      if (tries <= 5) setTimeout(() => { img.src = `${src}?try=${tries}`; }, 500 * tries);
    });
    img.src = src;
    return bubble;
  }

  function renderMessage(msg) {
    if (msg.type === "action") {
      const parts = [`你点击了「${msg.label || "按钮"}」`];
      if (msg.reason) parts.push(`原因：${msg.reason}`);
      if (msg.target) parts.push(`转交给 ${msg.target}`);
      const row = el("div", "row note");
      row.append(el("span", "note-text", `${parts.join(" · ")} · ${msg.time}`));
      return row;
    }
    const mine = msg.direction === "in";
    const row = el("div", `row ${mine ? "mine" : "bot"}`);
    row.dataset.id = msg.id;
    row.append(el("div", `avatar ${mine ? "me" : "bot"}`, mine ? initial(state.user) : "助"));
    const col = el("div", "col");
    col.append(el("div", "meta", `${mine ? state.user : "售后助手"} · ${msg.time}`));
    col.append(
      msg.type === "card" ? renderCard(msg)
        : msg.type === "photo" ? renderPhoto(msg)
          : el("div", "bubble", msg.text),
    );
    row.append(col);
    return row;
  }

  function nearBottom() {
    const t = $("timeline");
    return t.scrollHeight - t.scrollTop - t.clientHeight < 120;
  }

  function insertInOrder(timeline, id, node) {
    let next = null;
    let nextId = Infinity;
    for (const [otherId, other] of state.shown) {
      if (otherId > id && otherId < nextId && other.el.isConnected) {
        next = other.el;
        nextId = otherId;
      }
    }
    timeline.insertBefore(node, next);
  }

  function apply(data) {
    const t = $("timeline");
    const stick = nearBottom() || state.lastId === 0;
    if (state.lastId === 0) t.replaceChildren();
    for (const msg of data.messages) {
      if (state.shown.has(msg.id)) continue;
      const node = renderMessage(msg);
      state.shown.set(msg.id, { rev: msg.rev, el: node });
      t.append(node);
    }
    for (const msg of data.updated) {
      const known = state.shown.get(msg.id);
      if (known && known.rev === msg.rev) continue;
      const node = renderMessage(msg);
      if (known) {
        // A card that changed (a decision): re-render it where it stands.
        node.classList.add("flash");
        known.el.replaceWith(node);
      } else {
        // A row that committed after a newer one was shown: put it in its place.
        insertInOrder(t, msg.id, node);
      }
      state.shown.set(msg.id, { rev: msg.rev, el: node });
    }
    if (!t.children.length) {
      t.append(el("div", "placeholder", "还没有消息。试试发送 /帮助，或等待新的售后卡片。"));
    }
    state.lastId = Math.max(state.lastId, data.last_id);
    if (data.cursor) state.cursor = data.cursor;
    if (state.user) localStorage.setItem(seenKey(state.user), String(state.lastId));
    if (stick) t.scrollTop = t.scrollHeight;
    const touched = [...data.messages, ...data.updated].some(
      (m) => m.card && m.card.case_id === state.caseShown,
    );
    if (touched) loadTimeline(state.caseShown);
  }

  // --- server push --------------------------------------------------------------------
  function closeStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
  }

  // The member's chat, pushed; polling where EventSource is missing or keeps failing.
  function connect() {
    closeStream();
    clearTimeout(state.timer);
    if (!state.user || state.locked) return;
    if (!window.EventSource || Date.now() < state.streamAfter) { schedule(0); return; }
    const gen = state.generation;
    const q = new URLSearchParams({ user: state.user, after: String(state.lastId) });
    if (state.cursor) q.set("since", state.cursor);
    const source = new EventSource(`/console/api/stream?${q}`);
    state.stream = source;
    source.onopen = () => { state.streamErrors = 0; setConn(true); };
    source.onmessage = (event) => {
      if (gen !== state.generation || source !== state.stream) return;
      state.streamErrors = 0;
      apply(JSON.parse(event.data));
      setConn(true);
    };
    source.onerror = () => {
      if (source !== state.stream) return;
      state.streamErrors += 1;
      // CLOSED: refused outright (a 401 after the session ran out, a 400); a poll says why.
      if (source.readyState === EventSource.CLOSED || state.streamErrors >= SSE_ERRORS) {
        closeStream();
        state.streamErrors = 0;
        state.streamAfter = Date.now() + SSE_RETRY_MS;
        schedule(0);
      }
      setConn(false);
    };
  }

  async function poll() {
    if (!state.user || state.polling || state.locked || state.stream) return;
    state.polling = true;
    const gen = state.generation;
    let again = POLL_MS;
    try {
      const q = new URLSearchParams({ user: state.user, after: String(state.lastId) });
      if (state.cursor) q.set("since", state.cursor);
      const data = await api(`/console/api/messages?${q}`);
      if (gen === state.generation) {
        apply(data);
        if (data.more) again = 0;
      }
      setConn(true);
    } catch (e) {
      if (locked(e)) return;
      setConn(false);
      again = POLL_MS * 3;
    } finally {
      state.polling = false;
    }
    // A hidden tab still gets its cards, just less eagerly.
    if (document.hidden && again === POLL_MS) again = POLL_MS * 5;
    // Switched member meanwhile: the switch's own poll found this one in flight and
    // gave way, so start the new member's chat now.
    if (gen !== state.generation) { connect(); return; }
    if (window.EventSource && Date.now() >= state.streamAfter) { connect(); return; }
    schedule(again);
  }

  function schedule(ms) {
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, ms);
  }

  // After a post: the stream brings the answer by itself; a poller asks now.
  function pollSoon() {
    if (state.stream) return;
    if (state.polling) { setTimeout(pollSoon, 100); return; }
    schedule(0);
  }

  // --- a case's timeline (the panel a card's 时间线 button opens) --------------------------
  async function loadTimeline(caseId) {
    const list = $("trail-list");
    try {
      const data = await api(`/console/api/cases/${encodeURIComponent(caseId)}/timeline`);
      if (caseId !== state.caseShown) return;
      $("trail-title").textContent = `${data.case_id} 的时间线`;
      $("trail-sub").textContent = `订单 ${data.order_id} · 当前：${data.status}`;
      list.replaceChildren();
      for (const e of data.entries) {
        const item = el("li", `trail-item ${e.tone}`);
        const head = el("div", "trail-head");
        head.append(el("span", "trail-label", e.label), el("span", "trail-actor", e.actor));
        item.append(el("time", "trail-time", e.time), head);
        if (e.detail) item.append(el("div", "trail-detail", e.detail));
        list.append(item);
      }
      if (!data.entries.length) list.append(el("li", "empty", "还没有记录"));
    } catch (e) {
      if (!locked(e)) list.replaceChildren(el("li", "empty", e.message));
    }
  }

  function openTimeline(caseId) {
    state.caseShown = caseId;
    $("trail-title").textContent = `${caseId} 的时间线`;
    $("trail-sub").textContent = "正在加载…";
    $("trail-list").replaceChildren();
    $("trail").hidden = false;
    $("trail-close").focus();
    loadTimeline(caseId);
  }

  function closeTimeline() {
    state.caseShown = "";
    $("trail").hidden = true;
  }

  // --- sending ------------------------------------------------------------------------
  async function sendText(text) {
    text = text.trim();
    if (!state.user || !text) return;
    if (text.length > 2000) { toast("消息太长了（最多 2000 字）", "error"); return; }
    const button = $("send");
    button.disabled = true;
    try {
      await api("/console/api/send", { user: state.user, text, uuid: uuid4() });
      pollSoon();
      return true;
    } catch (e) {
      if (!locked(e)) toast(e.message, "error");
      return false;
    } finally {
      button.disabled = false;
    }
  }

  async function sendPhoto(file) {
    if (!state.user || !file) return;
    if (file.size > PHOTO_MAX) {
      toast(`照片过大（上限 ${(PHOTO_MAX / 1048576).toFixed(1)} MB），请压缩后重发`, "error");
      return;
    }
    const query = new URLSearchParams({ user: state.user, uuid: uuid4() });
    try {
      const res = await fetch(`/console/api/photo?${query}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": file.type || "application/octet-stream" },
        body: file,
      });
      if (!res.ok) {
        let data = null;
        try { data = await res.json(); } catch (_) { data = null; }
        const err = new Error((data && data.error) || `上传失败（${res.status}）`);
        err.status = res.status;
        throw err;
      }
      pollSoon();
    } catch (e) {
      if (!locked(e)) toast(e.message, "error");
    }
  }

  async function sendClick(card, button, extra) {
    const buttons = card.querySelectorAll(".card-buttons .btn");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await api("/console/api/click", {
        user: state.user, token: button.token, label: button.label, uuid: uuid4(), ...extra,
      });
      pollSoon();
      // A decided card comes back re-rendered (this node is replaced); a refused click
      // leaves it as it was, so give the buttons back once the reply had time to land.
      setTimeout(() => {
        if (card.isConnected && !card.classList.contains("closed")) {
          buttons.forEach((b) => { b.disabled = false; });
        }
      }, 2500);
    } catch (e) {
      toast(e.message, "error");
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // 驳回 and 驳回退款 work as in WeCom: the click goes out without a reason, the bot asks
  // for it in this chat, and the next message typed below is the reason (/取消 gives up).
  const ASKS_REASON = new Set(["reject", "resolve_reject"]);

  function onButton(card, button) {
    const prompt = card.querySelector(".card-prompt");
    prompt.replaceChildren();
    if (button.action === "transfer") { askTarget(card, prompt, button); return; }
    sendClick(card, button, {});
    if (ASKS_REASON.has(button.action)) replyBelow("在这里回复驳回原因，Enter 发送（发送 /取消 放弃）");
  }

  function replyBelow(hint) {
    const input = $("input");
    input.dataset.hint = input.dataset.hint || input.placeholder;
    input.placeholder = hint;
    input.focus();
  }

  function plainHint() {
    const input = $("input");
    if (input.dataset.hint) { input.placeholder = input.dataset.hint; delete input.dataset.hint; }
  }

  function promptBar(card, prompt, button, okLabel, field, read) {
    const bar = el("div", "prompt-actions");
    const ok = el("button", "btn primary", okLabel);
    ok.type = "button";
    const cancel = el("button", "btn default", "取消");
    cancel.type = "button";
    cancel.addEventListener("click", () => prompt.replaceChildren());
    ok.addEventListener("click", () => {
      const value = read();
      if (!value) { field.classList.add("invalid"); field.focus(); return; }
      prompt.replaceChildren();
      sendClick(card, button, { target: value });
    });
    bar.append(cancel, ok);
    prompt.append(field, bar);
    field.focus();
  }

  function askTarget(card, prompt, button) {
    prompt.append(el("label", "prompt-label", "转交给"));
    const select = el("select", "prompt-input");
    select.append(new Option("请选择成员…", ""));
    // Transfers go to a holder of the same role: list those first.
    const me = memberByName(state.user);
    const mine = new Set(me ? me.roles : []);
    const others = state.members.filter((m) => m.name !== state.user);
    const same = others.filter((m) => m.roles.some((r) => mine.has(r)));
    const rest = others.filter((m) => !same.includes(m));
    for (const [label, group] of [["同角色成员", same], ["其他成员", rest]]) {
      if (!group.length) continue;
      const g = document.createElement("optgroup");
      g.label = label;
      for (const m of group) g.append(new Option(`${m.name} · ${m.role_labels.join(" · ")}`, m.name));
      select.append(g);
    }
    promptBar(card, prompt, button, "确认转交", select, () => select.value);
  }

  // --- composer -----------------------------------------------------------------------
  function autosize() {
    const input = $("input");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  async function submit(event) {
    if (event) event.preventDefault();
    const input = $("input");
    const text = input.value;
    if (!text.trim()) return;
    if (await sendText(text)) {
      input.value = "";
      plainHint();
      autosize();
    }
  }

  function start() {
    $("composer").addEventListener("submit", submit);
    const photo = $("photo");
    photo.addEventListener("change", () => {
      const file = photo.files && photo.files[0];
      photo.value = "";
      sendPhoto(file);
    });
    const input = $("input");
    input.addEventListener("input", autosize);
    input.addEventListener("keydown", (e) => {
      // Chinese IME: Enter while composing picks a candidate, it must not send.
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) submit(e);
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.user) pollSoon();
    });
    $("trail-close").addEventListener("click", closeTimeline);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("trail").hidden) closeTimeline();
    });
    window.addEventListener("hashchange", () => {
      const name = decodeURIComponent(location.hash.slice(1));
      if (name && name !== state.user) selectMember(name);
    });
    loadMembers().then(() => {
      const wanted = decodeURIComponent(location.hash.slice(1)) || localStorage.getItem("returnhub.user");
      const first = state.members[0] && state.members[0].name;
      const pick = ME || (memberByName(wanted) ? wanted : first);
      if (pick) selectMember(pick);
    });
    state.membersTimer = setInterval(loadMembers, MEMBERS_MS);
    const logout = $("logout");
    if (logout) {
      logout.addEventListener("click", async () => {
        try { await api("/console/logout", {}); } catch (_) { /* signed out either way */ }
        location.href = "/console";
      });
    }
  }

  start();
})();
