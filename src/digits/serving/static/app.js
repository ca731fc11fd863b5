// The drawing page: draw (mouse, pen or finger) or upload a photo, and see what the model says:
// one digit as you draw (/v1/predict), or a whole number when asked (Read number: /v1/read).
// Plain JavaScript served by the app itself: no build step, nothing loaded from elsewhere.
"use strict";

(() => {
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const photo = document.getElementById("photo");
  const hint = document.getElementById("hint");
  const seen = document.getElementById("seen");
  const seenCtx = seen.getContext("2d");
  const result = document.getElementById("result");
  const labelEl = document.getElementById("label");
  const confidenceEl = document.getElementById("confidence");
  const bars = document.getElementById("bars");
  const statusEl = document.getElementById("status");
  const upload = document.getElementById("upload");
  const readButton = document.getElementById("read");
  const numberPanel = document.getElementById("number-result");
  const numberEl = document.getElementById("number");
  const numberNote = document.getElementById("number-note");
  const numberDigits = document.getElementById("number-digits");

  const LINE_WIDTH = 26; // canvas pixels (280 wide): MNIST's 2..3-pixel strokes once a full-height digit is scaled to 20
  let drawing = false;
  let dirty = false;       // the picture changed since the last request was sent
  let inFlight = false;    // a request is on its way
  let hasInk = false;
  let last = null;
  let generation = 0;      // bumped by Clear/upload: late answers for an old picture are dropped
  let uploaded = null;     // the uploaded photo, sent again by Read number

  // Ten rows of bars, 0..9.
  const rows = [];
  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="digit">${d}</span><span class="track"><span class="fill"></span></span>` +
                   `<span class="pct">–</span>`;
    li.dataset.digit = String(d);
    bars.appendChild(li);
    rows.push({ li, fill: li.querySelector(".fill"), pct: li.querySelector(".pct") });
  }

  function setState(state) { result.dataset.state = state; }

  function blank() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    seenCtx.fillStyle = "#000";
    seenCtx.fillRect(0, 0, seen.width, seen.height);
  }

  function reset() {
    generation++;
    blank();
    hasInk = false;
    dirty = false;
    photo.hidden = true;
    if (photo.src) URL.revokeObjectURL(photo.src);
    photo.removeAttribute("src");
    uploaded = null;
    canvas.hidden = false;
    hint.classList.remove("gone");
    labelEl.textContent = "–";
    confidenceEl.textContent = "draw a digit to start";
    rows.forEach(r => { r.fill.style.width = "0"; r.pct.textContent = "–"; r.li.classList.remove("top"); });
    numberPanel.hidden = true;
    numberPanel.dataset.state = "idle";
    numberDigits.replaceChildren();
    status("");
    setState("idle");
  }

  function status(text, isError = false) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", isError);
  }

  // --- drawing -------------------------------------------------------------
  function point(event) {
    const box = canvas.getBoundingClientRect();
    return {
      x: (event.clientX - box.left) * (canvas.width / box.width),
      y: (event.clientY - box.top) * (canvas.height / box.height),
    };
  }

  function stroke(from, to) {
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    if (from.x === to.x && from.y === to.y) {
      ctx.arc(to.x, to.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    }
    hasInk = true;
    hint.classList.add("gone");
    if (!numberPanel.hidden) numberPanel.dataset.state = "stale"; // the number read was of the old drawing
    changed();
  }

  canvas.addEventListener("pointerdown", event => {
    if (!photo.hidden) return;
    event.preventDefault();
    canvas.setPointerCapture?.(event.pointerId);
    drawing = true;
    last = point(event);
    stroke(last, last);
  });
  canvas.addEventListener("pointermove", event => {
    if (!drawing) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of (events.length ? events : [event])) {
      const p = point(e);
      stroke(last, p);
      last = p;
    }
  });
  const stop = () => { if (drawing) { drawing = false; changed(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  canvas.addEventListener("lostpointercapture", stop);

  // --- asking the model ----------------------------------------------------
  // At most one request at a time; while one is out, further strokes only mark the
  // picture dirty, and the newest picture goes out when the answer comes back.
  function changed() {
    if (!hasInk) return;
    dirty = true;
    setState("pending");
    if (!inFlight) sendCanvas();
  }

  function sendCanvas() {
    dirty = false;
    inFlight = true;
    const gen = generation;
    canvas.toBlob(blob => {
      const form = new FormData();
      form.append("file", blob, "drawing.png");
      ask(form, gen);
    }, "image/png");
  }

  async function ask(body, gen) {
    inFlight = true;
    try {
      const response = await fetch("/v1/predict?image=true", { method: "POST", body });
      const answer = await response.json().catch(() => ({ error: "bad_response", detail: response.statusText }));
      if (gen !== generation) return;
      if (!response.ok) {
        status(`${answer.detail || answer.error || response.status}`, true);
      } else {
        show(answer);
        status("");
      }
    } catch (err) {
      if (gen === generation) status(`The server did not answer (${err.message}).`, true);
    } finally {
      inFlight = false;
      if (gen === generation) {
        if (dirty && hasInk) sendCanvas();
        else if (result.dataset.state === "pending") setState(labelEl.dataset.unsure ? "unsure" : "done");
      }
    }
  }

  function show(answer) {
    const p = answer.probabilities || [];
    const best = p.length ? p.indexOf(Math.max(...p)) : -1;
    rows.forEach((r, d) => {
      const v = p[d] || 0;
      r.fill.style.width = `${(100 * v).toFixed(1)}%`;
      r.pct.textContent = `${(100 * v).toFixed(1)}%`;
      r.li.classList.toggle("top", d === best && v > 0);
    });
    if (answer.label === null || answer.label === undefined) {
      labelEl.textContent = "?";
      labelEl.dataset.unsure = "1";
      confidenceEl.textContent = answer.reason || "unsure";
    } else {
      labelEl.textContent = String(answer.label);
      delete labelEl.dataset.unsure;
      confidenceEl.textContent = `${(100 * answer.confidence).toFixed(1)}% sure`;
    }
    drawSeen(answer.image);
  }

  function drawSeen(image) {
    if (!image) {
      seenCtx.fillStyle = "#000";
      seenCtx.fillRect(0, 0, seen.width, seen.height);
      return;
    }
    const data = seenCtx.createImageData(28, 28);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const v = image[y][x];
        const i = 4 * (28 * y + x);
        data.data[i] = data.data[i + 1] = data.data[i + 2] = v;
        data.data[i + 3] = 255;
      }
    }
    seenCtx.putImageData(data, 0, 0);
  }

  // --- uploading a photo ---------------------------------------------------
  upload.addEventListener("change", () => {
    const file = upload.files && upload.files[0];
    if (!file) return;
    reset();
    const gen = generation;
    uploaded = file;
    photo.src = URL.createObjectURL(file);
    photo.hidden = false;
    hint.classList.add("gone");
    setState("pending");
    const form = new FormData();
    form.append("file", file, file.name);
    ask(form, gen);
    upload.value = "";
  });

  document.getElementById("clear").addEventListener("click", reset);

  // --- reading a whole number ----------------------------------------------
  // The uploaded photo, else the drawing, goes to /v1/read; each digit is shown with its confidence.
  readButton.addEventListener("click", () => {
    if (!uploaded && !hasInk) {
      status("Draw or upload a number first.", true);
      return;
    }
    const gen = generation;
    numberPanel.hidden = false;
    numberPanel.dataset.state = "pending";
    status("");
    const send = (blob, name) => {
      const form = new FormData();
      form.append("file", blob, name);
      readNumber(form, gen);
    };
    if (uploaded) send(uploaded, uploaded.name);
    else canvas.toBlob(blob => send(blob, "drawing.png"), "image/png");
  });

  async function readNumber(body, gen) {
    try {
      const response = await fetch("/v1/read", { method: "POST", body });
      const answer = await response.json().catch(() => ({ error: "bad_response", detail: response.statusText }));
      if (gen !== generation) return;
      if (!response.ok) {
        numberPanel.dataset.state = "error";
        status(`${answer.detail || answer.error || response.status}`, true);
      } else {
        showNumber(answer);
      }
    } catch (err) {
      if (gen === generation) {
        numberPanel.dataset.state = "error";
        status(`The server did not answer (${err.message}).`, true);
      }
    }
  }

  function showNumber(answer) {
    numberDigits.replaceChildren();
    if (answer.number === null || answer.number === undefined) {
      numberEl.textContent = "–";
      numberNote.textContent = answer.reason || "no digits found";
      numberPanel.dataset.state = "none";
      return;
    }
    numberEl.textContent = answer.number; // rows are joined by newlines, shown as lines
    numberNote.textContent = answer.complete ? "every digit read" : "? marks a digit the model is unsure of";
    for (const row of answer.rows) { // one line of digits per row, top to bottom
      const line = document.createElement("ol");
      line.className = "digit-row";
      for (const d of row.digits) {
        const li = document.createElement("li");
        li.className = "digit";
        li.dataset.label = d.label === null ? "?" : String(d.label);
        li.title = d.reason || "";
        const label = document.createElement("span");
        label.className = "digit-label";
        label.textContent = li.dataset.label;
        const pct = document.createElement("span");
        pct.className = "digit-pct";
        pct.textContent = `${(100 * d.confidence).toFixed(1)}%`;
        li.append(label, pct);
        line.appendChild(li);
      }
      numberDigits.appendChild(line);
    }
    numberPanel.dataset.state = answer.complete ? "done" : "incomplete";
  }

  // --- the model's name and accuracy ---------------------------------------
  fetch("/v1/model").then(r => r.json()).then(info => {
    const acc = typeof info.test_accuracy === "number" ? `, ${(100 * info.test_accuracy).toFixed(2)}% on the MNIST test set` : "";
    document.getElementById("model").textContent =
      `Model ${info.name}${info.architecture ? ` (${info.architecture})` : ""}${acc} · runtime ${info.runtime}`;
  }).catch(() => {});

  reset();
})();
