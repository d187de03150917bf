// 工作台: forms with data-api post JSON with the session's CSRF token; buttons with data-post
// post nothing; data-export downloads after a fresh second factor when the server asks for one.
(function () {
  "use strict";
  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)hehe_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function post(url, body) {
    // an empty form posts no body at all (routes with an optional body, e.g. accept)
    var empty = !body || !Object.keys(body).length;
    var headers = {"x-csrf-token": csrf()};
    if (!empty) headers["content-type"] = "application/json";
    return fetch(url, {method: "POST", credentials: "same-origin", headers: headers,
      body: empty ? undefined : JSON.stringify(body)});
  }
  async function errorText(resp) {
    try { var j = await resp.json(); return j.message || j.error || resp.statusText; }
    catch (e) { return resp.status + " " + resp.statusText; }
  }
  function fields(form) {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled || el.type === "submit" || el.form !== form) return;
      if (el.name === "ids" || el.type === "file") return;
      if (el.dataset.list) {  // checkboxes of one name: the list of the ticked values
        out[el.name] = out[el.name] || [];
        if (el.checked) out[el.name].push(el.value);
        return;
      }
      var v = el.value;
      if (el.type === "checkbox") v = el.checked;
      else if (el.dataset.type === "int") v = v === "" ? null : parseInt(v, 10);
      else if (el.dataset.type === "bool") v = v === "true";
      if (v === "" || v === null) return;  // left empty: not sent
      out[el.name] = v;
    });
    return out;
  }
  function then(target) {
    if (!target) return;
    if (target === "reload") location.reload(); else location.href = target;
  }
  // ---- step-up: a dialog asking for the TOTP code, resolved once the server accepts it
  function stepUp() {
    var dlg = document.getElementById("stepup"), form = document.getElementById("stepup-form");
    return new Promise(function (resolve, reject) {
      var msg = form.querySelector(".msg");
      msg.textContent = "";
      form.onsubmit = async function (ev) {
        ev.preventDefault();
        var r = await post("/auth/api/step-up", {code: form.elements.code.value});
        if (r.ok) { dlg.close(); form.reset(); resolve(); } else { msg.textContent = await errorText(r); }
      };
      dlg.addEventListener("cancel", function () { reject(new Error("cancelled")); }, {once: true});
      dlg.showModal();
    });
  }
  // a page that needs a fresh second factor (a face match): verify, then show it
  document.addEventListener("click", function (ev) {
    if (ev.target.matches && ev.target.matches("[data-stepup-reload]")) stepUp().then(function () { location.reload(); });
  });
  async function withStepUp(doit) {
    var r = await doit();
    if (r.status === 403) {
      var j = await r.clone().json().catch(function () { return {}; });
      if (j.error === "step_up_required") { await stepUp(); r = await doit(); }
    }
    return r;
  }
  document.addEventListener("submit", async function (ev) {
    var form = ev.target;
    if (!form.dataset.api) return;
    ev.preventDefault();
    var msg = form.querySelector(".msg"), body = fields(form);
    if (form.dataset.secondLook && !form.dataset.armed) {
      // an irreversible decision: the first press asks for a second look, the second one sends
      form.dataset.armed = "1";
      msg.textContent = form.dataset.secondLook;
      form.classList.add("armed");
      return;
    }
    if (form.dataset.upload) {  // a file sent as text (the server checks it), with its name
      var file = form.querySelector("input[type=file]").files[0];
      if (!file) return;
      body[form.dataset.upload] = await file.text();
      body.filename = file.name;
    }
    if (form.dataset.bulk) {
      body.ids = Array.prototype.map.call(document.querySelectorAll("input[name=ids]:checked"),
        function (el) { return parseInt(el.value, 10); });
      if (!body.ids.length) { msg.textContent = form.dataset.none; return; }
    }
    var button = form.querySelector("[type=submit]");
    if (button) button.disabled = true;
    try {
      var r = await withStepUp(function () { return post(form.dataset.api, body); });
      if (!r.ok) { msg.textContent = await errorText(r); return; }
      var j = await r.json().catch(function () { return {}; });
      if (form.id === "signin" && j.second_factor_setup) { msg.textContent = form.dataset.setup; return; }
      if (form.dataset.bulk) { showBulk(form, j); return; }
      if (form.dataset.show && j[form.dataset.show] !== undefined) {
        sessionStorage.setItem("console-notice", form.dataset.shown.replace("{" + form.dataset.show + "}", j[form.dataset.show]));
      }
      then(form.dataset.then);
    } finally { if (button) button.disabled = false; }
  });
  function showBulk(form, j) {
    form.querySelector(".msg").textContent = form.dataset.result.replace("{done}", j.done).replace("{failed}", j.failed);
    var ul = form.querySelector(".bulk-results");
    ul.textContent = "";
    j.results.forEach(function (res) {
      var li = document.createElement("li");
      var row = document.querySelector("tr[data-id='" + res.id + "'] a");
      li.textContent = (row ? row.textContent : "#" + res.id) + ": " + (res.ok ? "✓ " + res.status : "✗ " + res.error);
      li.className = res.ok ? "ok" : "failed";
      ul.appendChild(li);
    });
  }
  document.addEventListener("click", async function (ev) {
    var el = ev.target.closest("[data-post],[data-export]");
    if (!el) return;
    if (el.id === "all") return;
    ev.preventDefault();
    if (el.dataset.post) {
      var r = await post(el.dataset.post);
      if (r.ok) then(el.dataset.then); else alert(await errorText(r));
      return;
    }
    var label = el.textContent;
    el.disabled = true;
    try {
      var resp = await withStepUp(function () { return fetch(el.dataset.export, {credentials: "same-origin"}); });
      if (!resp.ok) { alert(await errorText(resp)); return; }
      if (resp.status === 202) { backgroundExport(await resp.json()); return; }
      var blob = await resp.blob();
      var name = (resp.headers.get("content-disposition") || "").replace(/.*filename="([^"]+)".*/, "$1") || "export";
      var a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = name;
      document.body.appendChild(a);
      a.click();
      setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    } finally { el.disabled = false; el.textContent = label; }
  });
  // A list larger than the instant limit is exported in the background: say so, then poll the
  // job and offer the file when it is ready ("导出已完成"; the person is also notified).
  function showNotice(text, link) {
    var p = document.getElementById("export-notice") || document.createElement("p");
    p.id = "export-notice";
    p.className = "notice card";
    p.setAttribute("role", "status");
    p.textContent = text + " ";
    if (link) {
      var a = document.createElement(link.download ? "button" : "a");
      if (link.download) { a.type = "button"; a.className = "secondary"; a.dataset.export = link.href; }
      else a.href = link.href;
      a.textContent = link.label;
      p.appendChild(a);
    }
    document.querySelector("main").prepend(p);
  }
  function backgroundExport(job) {
    showNotice(job.message, {href: job.url, label: "→"});
    var timer = setInterval(async function () {
      var r = await fetch(job.status_url, {credentials: "same-origin"});
      if (!r.ok) { clearInterval(timer); return; }
      var j = await r.json();
      if (j.status === "done") { clearInterval(timer); showNotice(j.message, {href: j.download, label: "⬇", download: true}); }
      else if (j.status === "failed") { clearInterval(timer); showNotice(j.error); }
    }, 2000);
  }
  document.addEventListener("change", function (ev) {
    if (ev.target.id === "all") {
      document.querySelectorAll("input[name=ids]").forEach(function (el) { el.checked = ev.target.checked; });
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var notice = sessionStorage.getItem("console-notice");
    if (notice) {
      sessionStorage.removeItem("console-notice");
      var p = document.createElement("p");
      p.className = "notice card";
      p.setAttribute("role", "status");
      p.textContent = notice;
      document.querySelector("main").prepend(p);
    }
  });
})();
