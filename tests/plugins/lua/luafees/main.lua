-- A fee of 0,50 € on every cart that holds something, through the market's cart.totals filter
-- (market.cart.totals): the checkout shows it under the products and adds it to the total.
halle.hook("market.cart.totals", function(totals)
  if type(totals) ~= "table" or (totals.subtotal_cents or 0) <= 0 then return nil end
  local adjustments = {}
  if type(totals.adjustments) == "table" then
    for _, a in ipairs(totals.adjustments) do adjustments[#adjustments + 1] = a end
  end
  adjustments[#adjustments + 1] = { label = "Frais de gestion", cents = 50 }
  totals.adjustments = adjustments
  return totals
end)
