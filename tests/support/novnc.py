"""What a test or benchmark asks noVNC's page in the browser."""

# Distinct colours in the noVNC canvas, sampled on a grid: a black or blank screen has one.
CANVAS_COLOURS = """
const canvas = document.querySelector('#screen canvas');
if (!canvas || !canvas.width) return 0;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
const seen = new Set();
for (let i = 0; i < data.length; i += 4 * 97) seen.add(data[i] + ',' + data[i+1] + ',' + data[i+2]);
return seen.size;
"""
