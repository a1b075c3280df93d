/* The shop with JavaScript: - and + steppers around each quantity, and the cart's total as it
 * would be with the quantities shown (the forms still post one product at a time, as without
 * JavaScript). Loaded as a file: the Content-Security-Policy forbids inline scripts. */
(function () {
  "use strict";
  var cart = document.getElementById("cart");
  if (!cart) return;
  var lang = document.documentElement.lang || "fr";
  var money = new Intl.NumberFormat(lang, { style: "currency", currency: "EUR" });
  var base = parseInt(cart.getAttribute("data-total-cents"), 10) || 0;
  var cards = document.querySelectorAll(".market-card[data-price-cents]");

  function live() {
    var total = base, changed = false;
    for (var i = 0; i < cards.length; i++) {
      var input = cards[i].querySelector("input[name=count]");
      if (!input) continue;
      var inCart = parseInt(cards[i].getAttribute("data-in-cart"), 10) || 0;
      var n = parseInt(input.value, 10);
      if (isNaN(n) || n < 0) n = 0;
      /* a product not in the cart shows 1 as a suggestion: counted only once touched */
      if (!inCart && !input.hasAttribute("data-touched")) continue;
      if (n !== inCart) changed = true;
      total += (n - inCart) * (parseInt(cards[i].getAttribute("data-price-cents"), 10) || 0);
    }
    var spans = cart.querySelectorAll(".market-live");
    for (var j = 0; j < spans.length; j++) {
      spans[j].hidden = !changed;
      var out = spans[j].querySelector(".market-live-total");
      if (out) out.textContent = money.format(total / 100);
    }
  }

  function stepper(input) {
    var wrap = document.createElement("span");
    wrap.className = "market-stepper";
    var minus = document.createElement("button"), plus = document.createElement("button");
    minus.type = plus.type = "button";
    minus.textContent = "−";
    plus.textContent = "+";
    minus.setAttribute("aria-label", lang.indexOf("en") === 0 ? "One less" : "Un de moins");
    plus.setAttribute("aria-label", lang.indexOf("en") === 0 ? "One more" : "Un de plus");
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(minus);
    wrap.appendChild(input);
    wrap.appendChild(plus);
    function step(d) {
      var n = parseInt(input.value, 10);
      if (isNaN(n)) n = 0;
      var max = parseInt(input.getAttribute("max"), 10);
      n = Math.max(0, n + d);
      if (!isNaN(max)) n = Math.min(max, n);
      input.value = String(n);
      input.setAttribute("data-touched", "1");
      live();
    }
    minus.addEventListener("click", function () { step(-1); });
    plus.addEventListener("click", function () { step(1); });
    input.addEventListener("input", function () { input.setAttribute("data-touched", "1"); live(); });
  }

  var inputs = document.querySelectorAll(".market-add input[name=count], .market-line-form input[name=count]");
  for (var i = 0; i < inputs.length; i++) stepper(inputs[i]);
  live();
})();
