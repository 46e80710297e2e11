// Trợ lý CCHC web chat: plain JavaScript, no dependencies. Every text from the server is set with textContent,
// so HTML in questions and answers is shown as text, never run.
(function () {
  "use strict";
  var log = document.getElementById("log");
  var form = document.getElementById("ask");
  var input = document.getElementById("question");
  var send = document.getElementById("send");
  var busy = false;

  function userId() {
    var key = "cchc-user", id = null;
    try { id = sessionStorage.getItem(key); } catch (e) { /* storage blocked in some iframes */ }
    if (!id) {
      var bytes = new Uint8Array(12);
      crypto.getRandomValues(bytes);
      id = Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
      try { sessionStorage.setItem(key, id); } catch (e) { /* keep it for this page only */ }
    }
    return id;
  }
  var user = userId();

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function safeUrl(url) {
    return /^https?:\/\//i.test(url || "") ? url : null;
  }

  function link(title, url) {
    var href = safeUrl(url);
    if (!href) return el("span", "", title);
    var a = el("a", "", title);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function section(parent, heading, items, render) {
    if (!items || !items.length) return;
    parent.appendChild(el("h2", "", heading));
    var ul = el("ul");
    items.forEach(function (item) { var li = el("li"); li.appendChild(render(item)); ul.appendChild(li); });
    parent.appendChild(ul);
  }

  function chips(parent, label, items) {
    if (!items.length) return;
    var group = el("div", "chips");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", label);
    items.forEach(function (item) {
      var b = el("button", "chip", item.label);
      b.type = "button";
      if (item.label !== item.question) b.title = item.question;
      b.addEventListener("click", function () { ask(item.question); });
      group.appendChild(b);
    });
    parent.appendChild(group);
  }

  function feedback(parent, questionId, token) {
    if (questionId === null || questionId === undefined || !token) return;
    var group = el("div", "feedback");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Đánh giá câu trả lời");
    group.appendChild(el("span", "", "Câu trả lời có hữu ích không?"));
    var buttons = [[1, "✓ Hữu ích"], [-1, "✗ Chưa đúng"]].map(function (pair) {
      var b = el("button", "", pair[1]);
      b.type = "button";
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", function () { vote(questionId, token, pair[0], b, buttons, group); });
      group.appendChild(b);
      return b;
    });
    parent.appendChild(group);
  }

  function vote(questionId, token, value, button, buttons, group) {
    buttons.forEach(function (b) { b.disabled = true; });
    post("api/feedback", { question_id: questionId, value: value, token: token }).then(function (data) {
      if (data.ok) {
        button.setAttribute("aria-pressed", "true");
        group.appendChild(el("span", "thanks", "Cảm ơn bạn đã góp ý!"));
      } else {
        buttons.forEach(function (b) { b.disabled = false; });
        group.appendChild(el("span", "thanks", "Chưa ghi nhận được góp ý, bạn thử lại sau nhé."));
      }
    }).catch(function () {
      buttons.forEach(function (b) { b.disabled = false; });
    });
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.error || "Lỗi máy chủ");
        return data;
      });
    });
  }

  function render(data) {
    var box = el("article", "msg bot");
    (data.notes || []).forEach(function (note) { box.appendChild(el("p", "note", note)); });
    box.appendChild(el("p", "text", data.answer));
    if (data.suggestions && data.suggestions.length) {
      box.appendChild(el("h2", "", "Có thể bạn muốn hỏi"));
      chips(box, "Có thể bạn muốn hỏi", data.suggestions.map(function (s) { return { label: s, question: s }; }));
    }
    section(box, "Nguồn", data.sources, function (s) { return link(s.cite || s.title, s.url); });
    section(box, "Dịch vụ công trực tuyến", data.links, function (x) { return link(x.title, x.url); });
    chips(box, data.kind === "clarify" ? "Chọn thủ tục" : "Hỏi tiếp", data.follow_ups || []);
    feedback(box, data.question_id, data.token);
    if (data.replies) waitForStaff(data.replies);
    return box;
  }

  // A ticket for staff is open: fetch their replies every 20 s while the page is open (kept for this tab).
  var staff = null, staffTimer = null;
  function waitForStaff(replies) {
    staff = replies;
    try { sessionStorage.setItem("cchc-staff", JSON.stringify(replies)); } catch (e) { /* this page only */ }
    if (!staffTimer) staffTimer = setInterval(pollStaff, 20000);
  }
  function pollStaff() {
    if (!staff) return;
    post("api/replies", staff).then(function (data) {
      (data.replies || []).forEach(function (text) {
        var box = el("article", "msg bot staff");
        box.appendChild(el("p", "text", text));
        log.appendChild(box);
        scroll();
      });
    }).catch(function () { /* try again at the next tick */ });
  }
  try {
    var kept = JSON.parse(sessionStorage.getItem("cchc-staff") || "null");
    if (kept && kept.user && kept.token) waitForStaff(kept);
  } catch (e) { /* nothing kept */ }

  function scroll() { log.scrollTop = log.scrollHeight; }

  function ask(question) {
    question = (question || "").trim();
    if (!question || busy) return;
    busy = true;
    send.disabled = true;
    log.setAttribute("aria-busy", "true");
    var mine = el("article", "msg user");
    mine.appendChild(el("p", "text", question));
    log.appendChild(mine);
    var waiting = el("p", "hint", "Đang tìm câu trả lời…");
    log.appendChild(waiting);
    scroll();
    post("api/ask", { question: question, user: user }).then(function (data) {
      log.replaceChild(render(data), waiting);
    }).catch(function (error) {
      var box = el("article", "msg bot error");
      var text = error instanceof TypeError ? "Xin lỗi, chưa kết nối được máy chủ. Bạn vui lòng thử lại sau ít phút."
        : error.message;
      box.appendChild(el("p", "text", text));
      log.replaceChild(box, waiting);
    }).then(function () {
      busy = false;
      send.disabled = false;
      log.setAttribute("aria-busy", "false");
      scroll();
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var question = input.value;
    if (!question.trim() || busy) return;
    input.value = "";
    ask(question);
    input.focus();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : send.click();
    }
  });
})();
