"""After the models: speakers on words, segments, speakers linked across chunks, chunks merged at seams."""
