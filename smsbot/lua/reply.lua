-- Replies that are not a keyword: the open conversation decides; otherwise help.
handlers['help'] = function()
  reply('help', {})
  return 'help'
end

handlers['reply'] = function()
  local conv = conv_get()
  if conv and conversations[conv.type] then
    local outcome = conversations[conv.type](conv)
    if outcome then return outcome end
  end
  if ctx.args.numbers then
    reply('no_menu', {})
    return 'no_menu'
  end
  reply('help', {})
  return 'help'
end
