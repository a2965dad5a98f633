// Refresh the server time from the JSON API once a second.
async function tick() {
  try {
    const response = await fetch("/api/time");
    const data = await response.json();
    document.getElementById("clock").textContent = data.utc;
  } catch (err) {
    document.getElementById("clock").textContent = "(offline)";
  }
}
tick();
setInterval(tick, 1000);
