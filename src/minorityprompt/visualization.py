"""Image grids with labels, for side-by-side comparisons."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def labelled_grid(
    rows: Sequence[Sequence[Image.Image]],
    column_labels: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    cell_size: int | None = None,
    padding: int = 4,
) -> Image.Image:
    """Arrange `rows` of images in a grid with column headers and row captions.

    Images are resized (nearest neighbour, so small images stay sharp) to `cell_size`, by
    default the larger of the first image's side and 128 pixels.
    """
    if not rows or not rows[0]:
        raise ValueError("labelled_grid needs at least one image.")
    first = rows[0][0]
    cell = cell_size or max(first.width, 128)
    font = ImageFont.load_default()
    header = 16 if column_labels else 0
    caption = 14 if row_labels else 0
    columns = max(len(row) for row in rows)
    width = columns * (cell + padding) + padding
    height = header + len(rows) * (cell + caption + padding) + padding
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)

    for column, label in enumerate(column_labels):
        draw.text((padding + column * (cell + padding), 2), label, fill="black", font=font)
    for row_index, row in enumerate(rows):
        top = header + row_index * (cell + caption + padding) + padding
        if row_index < len(row_labels):
            text = row_labels[row_index]
            max_chars = max(8, width // 6)
            text = text if len(text) <= max_chars else text[: max_chars - 3] + "..."
            draw.text((padding, top), text, fill="black", font=font)
        for column, image in enumerate(row):
            resized = image.convert("RGB").resize((cell, cell), Image.NEAREST)
            grid.paste(resized, (padding + column * (cell + padding), top + caption))
    return grid
