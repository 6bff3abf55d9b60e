// boxoffice's pages work without this script; with it: the checkout's countdown, live seat
// counts on a concert's page (the availability stream), the place in a waiting room's queue as
// it moves (the pages' own stream of it), and the door's camera scanner where the browser has
// one (BarcodeDetector).
"use strict";

function countdown() {
  const time = document.querySelector("[data-countdown]");
  if (!time) return;
  const end = Date.parse(time.getAttribute("datetime"));
  const tick = () => {
    const left = Math.max(0, Math.round((end - Date.now()) / 1000));
    const minutes = Math.floor(left / 60), seconds = left % 60;
    time.textContent = left > 0
      ? minutes + ":" + String(seconds).padStart(2, "0") + " left"
      : "the reservation has run out";
    if (left > 0) setTimeout(tick, 1000);
  };
  tick();
}

function liveCounts() {
  const page = document.querySelector("[data-concert]");
  if (!page || !window.EventSource) return;
  const id = page.getAttribute("data-concert");
  const stream = new EventSource("/api/v1/concerts/" + id + "/availability/stream");
  stream.addEventListener("availability", (event) => {
    const data = JSON.parse(event.data);
    for (const seat of data.seat_types || []) {
      const cell = document.querySelector('[data-remaining="' + seat.id + '"]');
      if (cell && cell.textContent !== String(seat.remaining)) cell.textContent = seat.remaining;
    }
  });
  stream.addEventListener("closed", () => stream.close());
}

// The queue page: each event of the stream is the sentence to show in the live region; when
// the fan's turn comes, the page loads again, now with the tickets to choose from.
function queuePlace() {
  const region = document.querySelector("[data-queue-stream]");
  if (!region || !window.EventSource) return;
  const text = region.querySelector("[data-queue-text]");
  const stream = new EventSource(region.getAttribute("data-queue-stream"));
  const say = (event) => {
    const sentence = JSON.parse(event.data).text;
    if (sentence && text.textContent !== sentence) text.textContent = sentence;
  };
  stream.addEventListener("position", say);
  stream.addEventListener("admitted", (event) => {
    stream.close();
    say(event);
    window.location.reload();
  });
}

async function camera() {
  const button = document.querySelector("[data-camera]");
  if (!button || !("BarcodeDetector" in window) || !navigator.mediaDevices) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const video = document.querySelector("[data-camera-view]");
    const form = document.querySelector("[data-scan]");
    const detector = new BarcodeDetector({ formats: ["qr_code"] });
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    const look = async () => {
      const found = await detector.detect(video).catch(() => []);
      if (found.length > 0) {
        stream.getTracks().forEach((track) => track.stop());
        form.querySelector("#code").value = found[0].rawValue;
        form.submit();
      } else {
        requestAnimationFrame(look);
      }
    };
    look();
  });
}

document.addEventListener("DOMContentLoaded", () => { countdown(); liveCounts(); queuePlace(); camera(); });
