-- The market's order hooks as a partner's plugin uses them (tests/integration/test_market_orders.py):
-- market.order.validate refuses the lines of products whose name holds "interdit", with a
-- message for the client, and stops the whole order past 500 EUR; the actions are recorded.
halle.hook("market.order.validate", function(order)
  if order.total_cents > 50000 then
    return halle.stop(422, "Le plugin de test refuse les commandes de plus de 500 €.")
  end
  local refused = {}
  for _, line in ipairs(order.lines) do
    if string.find(line.name, "interdit", 1, true) then
      refused[#refused + 1] = { product_id = line.product_id,
                                message = "« " .. line.name .. " » ne peut pas être commandé (plugin de test)." }
    end
  end
  if #refused > 0 then
    order.refused = refused
    return order
  end
end)

for _, hook in ipairs({ "market.order.placed", "market.order.changed", "market.order.cancelled" }) do
  halle.hook(hook, function(data)
    halle.db.exec("INSERT INTO luaorders_seen (hook, object_id, total_cents) VALUES (?, ?, ?)",
                  hook, data.order_id, data.total_cents)
  end)
end
halle.hook("market.distribution.closed", function(data)
  halle.db.exec("INSERT INTO luaorders_seen (hook, object_id, total_cents) VALUES (?, ?, NULL)",
                "market.distribution.closed", data.distribution_id)
end)
