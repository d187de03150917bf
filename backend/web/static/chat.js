// The Hehe web page: sign-in (phone code, staff password + TOTP, invite, demo), then the chat
// with the same bot as Telegram. No inline script (the page's CSP forbids it).
"use strict";
const $ = (id) => document.getElementById(id);
const T = {
  zh: {
    menu: "菜单", lead: "台州市数字法治助手：反映矛盾纠纷、报告走失人员、跟踪督办事项。", tab_phone: "手机号登录",
    tab_staff: "工作人员", tab_invite: "邀请码注册", phone_off: "短信验证码登录暂未开通。", phone: "手机号",
    code: "验证码", get_code: "获取验证码", name_opt: "称呼（选填）", sign_in: "登录", login: "登录名",
    password: "密码", totp: "动态验证码（验证器 App）", invite: "邀请码", name: "姓名",
    login_new: "登录名（字母或数字）", password_new: "设置密码（至少 10 位）", redeem: "注册", demo: "演示模式",
    enter: "进入", new_user: "新建用户", new_name: "新用户姓名", setup_title: "设置两步验证",
    setup_lead: "工作人员可以看到个人信息，登录需要密码和验证器 App 中的动态验证码。", next: "下一步",
    totp_add: "在验证器 App（如 Google Authenticator、Microsoft Authenticator）中添加下面的密钥，然后输入它显示的 6 位数字：",
    open_app: "在本机验证器中打开", confirm: "确认", logout: "退出登录", photo: "拍照", file: "发送文件",
    location: "发送我的位置", type_here: "输入消息，如 /start", send: "发送", me: "我的账号", place: "辖区，如 椒江区",
    set_role: "设置角色（演示）", sessions: "登录设备", link: "关联 Telegram",
    link_help: "在 Telegram 中向和合发送 /link，把收到的关联码填在这里。", close: "关闭", this_device: "本机",
    end: "下线", code_sent: "验证码已发送，5 分钟内有效。", resend_in: "{s} 秒后重发", geo_ask: "要把您当前的位置发送给和合吗？位置只用于您正在办理的事项。",
    geo_denied: "无法获取位置：请在浏览器中允许定位。", geo_none: "此浏览器不支持定位。", role_set: "角色已设置",
    linked: "已关联 Telegram 账号。", edited: "已更新", file_doc: "📄 文件", you_pressed: "您选择了：", error: "出错了",
    step_up: "请输入验证器 App 中的 6 位动态验证码：", roles: { citizen: "群众", mediator: "调解员", deputy: "人大代表",
      procurator: "检察官", officer: "民警/民政", official: "领导/工作人员", admin: "管理员" },
  },
  en: {
    menu: "Menu", lead: "Taizhou's rule-of-law assistant: report disputes and missing persons, follow supervision items.",
    tab_phone: "Phone", tab_staff: "Staff", tab_invite: "Invite code", phone_off: "Sign-in by SMS code is not available.",
    phone: "Mobile number", code: "Code", get_code: "Get code", name_opt: "Name (optional)", sign_in: "Sign in",
    login: "Sign-in name", password: "Password", totp: "Authenticator code", invite: "Invite code", name: "Name",
    login_new: "Sign-in name (letters or digits)", password_new: "Password (at least 10 characters)", redeem: "Register",
    demo: "Demo mode", enter: "Enter", new_user: "New user", new_name: "New user's name", setup_title: "Two-step sign-in",
    setup_lead: "Staff see personal data: signing in needs a password and the code of an authenticator app.", next: "Next",
    totp_add: "Add this key to an authenticator app (e.g. Google or Microsoft Authenticator), then enter the 6 digits it shows:",
    open_app: "Open in an authenticator on this device", confirm: "Confirm", logout: "Sign out", photo: "Take a photo",
    file: "Send a file", location: "Send my location", type_here: "Type a message, e.g. /start", send: "Send",
    me: "My account", place: "Area, e.g. 椒江区", set_role: "Set role (demo)", sessions: "Signed-in devices",
    link: "Link Telegram", link_help: "Send /link to Hehe in Telegram and enter the code here.", close: "Close",
    this_device: "this device", end: "Sign out", code_sent: "Code sent, valid for 5 minutes.", resend_in: "resend in {s}s",
    geo_ask: "Send your current location to Hehe? It is used only for what you are reporting.",
    geo_denied: "No location: please allow location access in the browser.", geo_none: "This browser cannot share a location.",
    role_set: "Role set", linked: "Telegram account linked.", edited: "edited", file_doc: "📄 File", you_pressed: "You chose: ",
    error: "Something went wrong", step_up: "Enter the 6-digit code from your authenticator app:",
    roles: { citizen: "citizen", mediator: "mediator", deputy: "deputy", procurator: "procurator", officer: "officer",
      official: "official", admin: "admin" },
  },
};
let lang = localStorage.getItem("hehe.lang") || "zh";
const t = (k, p = {}) => String(T[lang][k] ?? T.zh[k] ?? k).replace(/\{(\w+)\}/g, (_, n) => p[n]);
let config = { demo: false, phone: false, providers: [] }, me = null, since = 0, polling = 0, booted = false;
const bubbles = new Map(), used = new Set(), shown = new Set();

function applyLang() {
  document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
  document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
  document.querySelectorAll("[data-tp]").forEach((e) => { e.placeholder = t(e.dataset.tp); });
  document.querySelectorAll("[data-tt]").forEach((e) => { e.title = t(e.dataset.tt); e.setAttribute("aria-label", t(e.dataset.tt)); });
  $("lang").textContent = lang === "en" ? "中文" : "English";
  if (me) whoami();
}
function csrf() { const m = document.cookie.match(/(?:^|; )hehe_csrf=([^;]+)/); return m ? m[1] : ""; }
class ApiError extends Error { constructor(status, body) { super(body.message || status); this.status = status; this.body = body; } }
async function api(path, opts = {}) {
  const headers = Object.assign({ "Accept-Language": lang }, opts.headers || {});
  if (opts.method && opts.method !== "GET") headers["X-CSRF-Token"] = csrf();
  const r = await fetch(path, Object.assign({}, opts, { headers, credentials: "same-origin" }));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}
const post = (path, data) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data || {}) });
function show(id) { for (const s of ["login", "setup", "chat"]) $(s).classList.toggle("hidden", s !== id); $("menu").classList.toggle("hidden", id !== "chat"); }
function say(el, text) { $(el).textContent = text || ""; }
function whoami() {
  const u = me.user;
  $("whoami").textContent = `${u.name} · ${T[lang].roles[u.role] || u.role}${u.jurisdiction ? " · " + u.jurisdiction : ""}`;
  $("me-line").textContent = $("whoami").textContent;
}
function hhmm(iso) { const d = new Date(iso); return isNaN(d) ? "" : d.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" }); }

// ---------------------------------------------------------------- start
async function boot() {
  applyLang();
  const [c, m] = await Promise.all([api("/auth/api/config").catch(() => config), api("/auth/api/me").catch(() => null)]);
  config = c;
  if (booted) return;  // signed in meanwhile (e.g. a quick click in demo mode)
  booted = true; me = m; route();
}
function route() {
  if (!me) { loginScreen(); return; }
  whoami();
  if (me.second_factor_setup) { setupScreen(); return; }
  chatScreen();
}

// ---------------------------------------------------------------- sign-in
function loginScreen() {
  show("login");
  $("phone-off").classList.toggle("hidden", config.phone);
  for (const id of ["phone", "code", "getcode"]) $(id).disabled = !config.phone;
  $("demo").classList.toggle("hidden", !config.demo);
  const prov = $("providers"); prov.innerHTML = "";
  for (const p of config.providers || []) { const a = document.createElement("a"); a.href = p.url; a.textContent = p.label; prov.appendChild(a); }
  if (config.demo) loadDemoUsers();
}
document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll(".tabs button").forEach((x) => x.classList.toggle("on", x === b));
  for (const f of ["phone", "staff", "invite"]) $("f-" + f).classList.toggle("hidden", f !== b.dataset.tab);
  say("login-msg", "");
}));
let resendTimer = null;
$("getcode").addEventListener("click", async () => {
  say("login-msg", "");
  try {
    const r = await post("/auth/api/phone/code", { phone: $("phone").value });
    say("login-msg", t("code_sent")); $("code").focus();
    let left = r.resend_in; const b = $("getcode"); b.disabled = true;
    clearInterval(resendTimer);
    resendTimer = setInterval(() => { left -= 1; b.textContent = t("resend_in", { s: left }); if (left <= 0) { clearInterval(resendTimer); b.disabled = false; b.textContent = t("get_code"); } }, 1000);
  } catch (e) { say("login-msg", e.message); }
});
async function signedIn(r) { booted = true; me = await api("/auth/api/me"); since = 0; route(); return r; }
$("f-phone").addEventListener("submit", async (e) => {
  e.preventDefault(); say("login-msg", "");
  try { await signedIn(await post("/auth/api/phone/verify", { phone: $("phone").value, code: $("code").value, name: $("pname").value, language: lang })); }
  catch (err) { say("login-msg", err.message); }
});
$("f-staff").addEventListener("submit", async (e) => {
  e.preventDefault(); say("login-msg", "");
  try { await signedIn(await post("/auth/api/password", { login: $("slogin").value, password: $("spass").value, totp: $("stotp").value })); }
  catch (err) { say("login-msg", err.message); }
});
let pendingTotp = null;
$("f-invite").addEventListener("submit", async (e) => {
  e.preventDefault(); say("login-msg", "");
  try {
    const r = await post("/auth/api/invite", { code: $("icode").value, name: $("iname").value, login: $("ilogin").value, password: $("ipass").value, language: lang });
    pendingTotp = r; await signedIn(r);
  } catch (err) { say("login-msg", err.message); }
});
async function loadDemoUsers() {
  const r = await api("/auth/api/demo/users").catch(() => ({ users: [] }));
  const sel = $("demo-who"); sel.innerHTML = "";
  for (const u of r.users) { const o = document.createElement("option"); o.value = u.id; o.textContent = `${u.name} · ${T[lang].roles[u.role] || u.role}${u.jurisdiction ? " · " + u.jurisdiction : ""}`; sel.appendChild(o); }
}
$("demo-go").addEventListener("click", async () => { if ($("demo-who").value) await signedIn(await post("/auth/api/demo/login", { user: parseInt($("demo-who").value, 10) })); });
$("demo-new").addEventListener("click", async () => { await signedIn(await post("/auth/api/demo/new", { name: $("demo-name").value, language: lang })); });

// ---------------------------------------------------------------- staff set-up (password + TOTP)
function setupScreen() {
  show("setup"); say("setup-msg", "");
  if (pendingTotp && pendingTotp.totp_secret) { showTotp(pendingTotp); return; }
  $("f-setpass").classList.toggle("hidden", me.has_password);
  $("f-totp").classList.add("hidden");
  if (me.has_password) post("/auth/api/totp/new").then(showTotp).catch((e) => say("setup-msg", e.message));
}
function showTotp(r) {
  $("f-setpass").classList.add("hidden"); $("f-totp").classList.remove("hidden");
  $("secret").textContent = r.totp_secret.replace(/(.{4})/g, "$1 ").trim(); $("otpauth").href = r.totp_uri;
  $("qr").src = r.totp_qr;
}
$("f-setpass").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { showTotp(await post("/auth/api/setup", { login: $("plogin").value, password: $("ppass").value })); }
  catch (err) { say("setup-msg", err.message); }
});
$("f-totp").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await post("/auth/api/totp", { code: $("ttotp").value }); pendingTotp = null; await signedIn(); }
  catch (err) { say("setup-msg", err.message); }
});
$("setup-out").addEventListener("click", () => logout());

// ---------------------------------------------------------------- chat
function chatScreen() {
  show("chat"); $("log").innerHTML = ""; bubbles.clear(); used.clear(); shown.clear(); since = 0;
  $("demo-role").classList.toggle("hidden", !config.demo);
  longPoll();
}
function toast(text) { const d = document.createElement("div"); d.className = "msg toast"; d.textContent = text; $("log").appendChild(d); scroll(); }
function scroll() { $("log").scrollTop = $("log").scrollHeight; }
function stamp(d, iso) { const s = document.createElement("span"); s.className = "at"; s.textContent = hhmm(iso); d.appendChild(s); }
function renderMine(m) {
  if (m.press) { used.add(m.message_id); const b = bubbles.get(m.message_id); if (b) disable(b); }
  const d = document.createElement("div"); d.className = "msg me";
  if (m.photo_id) { const i = document.createElement("img"); i.src = "/chat/files/" + m.photo_id; i.alt = t("photo"); d.appendChild(i); }
  const text = m.press ? t("you_pressed") + m.text : m.location ? `📍 ${m.location[0].toFixed(5)}, ${m.location[1].toFixed(5)}` : m.document ? `📄 ${m.document}${m.text ? "\n" + m.text : ""}` : m.text;
  if (text) d.appendChild(document.createTextNode(text));
  stamp(d, m.at); $("log").appendChild(d);
}
function disable(d) { d.querySelectorAll(".kb button").forEach((b) => { b.disabled = true; }); }
function renderBot(m) {
  if (m.toast) { toast(m.text); return; }
  let d = bubbles.get(m.message_id);
  if (m.deleted) { if (d) d.remove(); return; }
  if (!d) { d = document.createElement("div"); d.className = "msg bot"; bubbles.set(m.message_id, d); $("log").appendChild(d); }
  d.innerHTML = "";
  if (m.photo_id) { const i = document.createElement("img"); i.src = "/chat/files/" + m.photo_id; i.alt = t("photo"); d.appendChild(i); }
  if (m.document_id) { const a = document.createElement("a"); a.href = "/chat/files/" + m.document_id; a.textContent = t("file_doc"); d.appendChild(a); d.appendChild(document.createElement("br")); }
  d.appendChild(document.createTextNode(m.text));
  if (m.edited) { const e = document.createElement("div"); e.className = "edited"; e.textContent = t("edited"); d.appendChild(e); used.delete(m.message_id); }
  if (m.inline && m.inline.length) {
    const kb = document.createElement("div"); kb.className = "kb";
    for (const row of m.inline) {
      const r = document.createElement("div"); r.className = "row";
      for (const b of row) {
        const btn = document.createElement("button"); btn.type = "button"; btn.textContent = b.text;
        btn.disabled = used.has(m.message_id);
        btn.addEventListener("click", () => press(d, m.message_id, b.data));
        r.appendChild(btn);
      }
      kb.appendChild(r);
    }
    d.appendChild(kb);
  }
  stamp(d, m.at);
  const reply = $("replykb"); reply.innerHTML = "";
  const inl = new Set((m.inline || []).flat().map((b) => b.text));
  for (const l of (m.buttons || []).filter((x) => !inl.has(x))) { const b = document.createElement("button"); b.type = "button"; b.textContent = l; b.addEventListener("click", () => send(l)); reply.appendChild(b); }
}
function render(list) {
  for (const m of list) {
    if (m.mine || m.toast) { if (shown.has(m.seq)) continue; shown.add(m.seq); }  // two polls may bring the same
    (m.mine ? renderMine : renderBot)(m);
  }
  if (list.length) scroll();
}
async function press(d, messageId, data) {
  disable(d); used.add(messageId);
  try { await post("/chat/api/press", { message_id: messageId, data }); } catch (e) { onError(e); }
  await poll();
}
async function poll() {
  const r = await api(`/chat/api/messages?since=${since}`).catch(onError);
  if (r) { render(r.messages); since = Math.max(since, r.last); }
}
async function longPoll() {
  const mine = ++polling;
  await poll();
  while (mine === polling && me) {
    try {
      const r = await api(`/chat/api/messages?since=${since}&wait=20`);
      if (mine !== polling) return;
      render(r.messages); since = Math.max(since, r.last);
    } catch (e) { onError(e); await new Promise((ok) => setTimeout(ok, 2000)); }
  }
}
function onError(e) {
  if (e && (e.status === 401)) { me = null; polling++; loginScreen(); return; }
  toast((e && e.message) || t("error"));
}
async function send(text) {
  if (!text) return;
  try { await post("/chat/api/send", { text }); } catch (e) { onError(e); }
  await poll();
}
$("send").addEventListener("submit", (e) => { e.preventDefault(); const v = $("text").value.trim(); $("text").value = ""; send(v); });
async function upload(input) {
  const f = input.files[0]; if (!f) return;
  const fd = new FormData(); fd.append("caption", ""); fd.append("file", f);
  try { await api("/chat/api/photo", { method: "POST", body: fd }); } catch (e) { onError(e); }
  input.value = ""; await poll();
}
$("camera").addEventListener("change", (e) => upload(e.target));
$("file").addEventListener("change", (e) => upload(e.target));
$("loc").addEventListener("click", () => {
  if (!navigator.geolocation) { toast(t("geo_none")); return; }
  if (!window.confirm(t("geo_ask"))) return;
  navigator.geolocation.getCurrentPosition(async (pos) => {
    try { await post("/chat/api/location", { lat: pos.coords.latitude, lon: pos.coords.longitude }); } catch (e) { onError(e); }
    await poll();
  }, () => toast(t("geo_denied")), { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
});

// ---------------------------------------------------------------- drawer: account, sessions, link, logout
$("menu").addEventListener("click", async () => { $("drawer").classList.remove("hidden"); await loadSessions(); });
$("close").addEventListener("click", () => $("drawer").classList.add("hidden"));
async function loadSessions() {
  const r = await api("/auth/api/sessions").catch(() => ({ sessions: [] }));
  const ul = $("sessions"); ul.innerHTML = "";
  for (const s of r.sessions) {
    const li = document.createElement("li");
    const span = document.createElement("span"); span.textContent = `${hhmm(s.last_seen_at)} · ${s.method}${s.current ? " · " + t("this_device") : ""} · ${(s.user_agent || "").slice(0, 24)}`;
    li.appendChild(span);
    if (!s.current) { const b = document.createElement("button"); b.type = "button"; b.textContent = t("end"); b.addEventListener("click", async () => { await api(`/auth/api/sessions/${s.id}`, { method: "DELETE" }).catch(onError); loadSessions(); }); li.appendChild(b); }
    ul.appendChild(li);
  }
}
$("linkgo").addEventListener("click", async () => {
  try { await post("/auth/api/link", { code: $("linkcode").value }); $("drawer").classList.add("hidden"); toast(t("linked")); await signedIn(); }
  catch (e) { toast(e.message); }
});
$("setrole").addEventListener("click", async () => {
  try { await post("/auth/api/demo/role", { role: $("role").value, jurisdiction: $("place").value || null }); me = await api("/auth/api/me"); whoami(); toast(t("role_set")); }
  catch (e) { toast(e.message); }
});
async function logout() {
  await post("/auth/api/logout").catch(() => {});
  me = null; polling++; $("drawer").classList.add("hidden"); $("log").innerHTML = ""; bubbles.clear(); loginScreen();
}
$("logout").addEventListener("click", () => logout());
$("lang").addEventListener("click", () => { lang = lang === "en" ? "zh" : "en"; localStorage.setItem("hehe.lang", lang); applyLang(); });
boot();
