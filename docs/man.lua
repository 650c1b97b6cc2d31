-- pandoc filter for the manual pages (docs/meson.build): a table becomes a
-- definition list, its first column the term and the others the
-- definition, each after its column's heading.  man's tables do not wrap a
-- long cell, which a terminal of 80 columns then cannot show.
function Table(t)
  local head = {}
  if t.head and t.head.rows and t.head.rows[1] then
    for i, c in ipairs(t.head.rows[1].cells) do
      head[i] = pandoc.utils.stringify(c.contents)
    end
  end
  local items = {}
  for _, body in ipairs(t.bodies) do
    for _, row in ipairs(body.body) do
      local term = pandoc.utils.blocks_to_inlines(row.cells[1].contents)
      local blocks = {}
      for i = 2, #row.cells do
        local inl = pandoc.utils.blocks_to_inlines(row.cells[i].contents)
        if #inl > 0 then
          local para = {}
          if head[i] and head[i] ~= "" then
            table.insert(para, pandoc.Emph({pandoc.Str(head[i] .. ":")}))
            table.insert(para, pandoc.Space())
          end
          for _, x in ipairs(inl) do
            table.insert(para, x)
          end
          table.insert(blocks, pandoc.Para(para))
        end
      end
      table.insert(items, {term, {blocks}})
    end
  end
  return pandoc.DefinitionList(items)
end
